// API keys of the developer endpoint, and what the server keeps of them.
//
//   cnk_<id>_<secret>        60 characters, e.g.
//   cnk_k3v7q2mxa9bc_4fQ...  (no character outside [0-9A-Za-z_])
//
//   id      12 characters of lowercase RFC 4648 base32 (a-z, 2-7), 60 random
//           bits. Public: it names the key in the store, in logs and in
//           metrics labels, and the store finds a key by it, so checking a
//           key is one map lookup and one hash.
//   secret  43 characters of base62 (0-9, A-Z, a-z), each drawn uniformly
//           from RAND_bytes: 256 bits of entropy. Shown once when issued,
//           never stored.
//
// The store keeps a random salt and SHA-256(salt || secret) per key, and
// compares digests with CRYPTO_memcmp (time independent of where they
// differ).
// Thread-safe: pure functions (OpenSSL 3's RAND_bytes is thread-safe).
#ifndef CONCLAVE_SERVER_AUTH_API_KEY_H_
#define CONCLAVE_SERVER_AUTH_API_KEY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace conclave::server::auth {

inline constexpr absl::string_view kApiKeyPrefix = "cnk_";
inline constexpr size_t kKeyIdLength = 12;
inline constexpr size_t kSecretLength = 43;  // 43 * log2(62) = 256.03 bits
inline constexpr size_t kApiKeyLength = 4 + kKeyIdLength + 1 + kSecretLength;
inline constexpr size_t kSaltBytes = 16;
inline constexpr size_t kSecretHashBytes = 32;  // SHA-256

// The prefix-cache salt of requests made without a key (open mode). No key's
// salt is 0 (CacheSaltForKey), so open-mode blocks are never shared with a
// key's requests.
inline constexpr uint64_t kOpenModeCacheSalt = 0;

struct ApiKey {
  std::string id;      // kKeyIdLength characters, public
  std::string secret;  // kSecretLength characters, as the client sends it
};

// "cnk_<id>_<secret>".
std::string FormatApiKey(const ApiKey& key);

// A new key from RAND_bytes; INTERNAL when the generator fails.
absl::StatusOr<ApiKey> GenerateApiKey();

// Splits a key into id and secret. UNAUTHENTICATED saying what is wrong with
// its shape (prefix, length, alphabet); the message never contains the text.
absl::StatusOr<ApiKey> ParseApiKey(absl::string_view text);

// Parses the value of an `authorization` header or gRPC metadata entry:
// "Bearer <key>" (scheme case-insensitive, RFC 7235; surrounding whitespace
// ignored). UNAUTHENTICATED for a missing value, another scheme or a
// malformed key, with a message that never repeats the value.
absl::StatusOr<ApiKey> ParseBearer(absl::string_view authorization);

// kKeyIdLength characters of lowercase base32.
bool IsValidKeyId(absl::string_view id);

// `n` bytes from RAND_bytes; INTERNAL when the generator fails.
absl::StatusOr<std::string> RandomBytes(size_t n);

// SHA-256(salt || secret), kSecretHashBytes raw bytes.
//
// Why one round of SHA-256 and not a slow password KDF (bcrypt, scrypt,
// Argon2): a KDF's cost only protects secrets an attacker can enumerate,
// such as human-chosen passwords. Our secrets are 256 uniformly random bits,
// so even with the store file in hand finding a secret that matches a digest
// is a 2^256 search whatever the hash costs. A KDF would add its cost to
// every request instead (the server checks the key on each call), and give
// unauthenticated clients a cheap way to burn server CPU. The salt costs
// nothing and keeps digests of the same secret in two stores unrelated.
std::string HashSecret(absl::string_view salt, absl::string_view secret);

// a == b in time that depends only on the lengths (CRYPTO_memcmp). Lengths
// are not secret here: digests always have kSecretHashBytes.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// HashSecret(salt, secret) == digest, compared with ConstantTimeEquals.
bool VerifySecret(absl::string_view secret, absl::string_view salt, absl::string_view digest);

// The engine's prefix-cache salt for requests under `key_id`: the first 8
// bytes (big-endian) of SHA-256("conclave-cache-salt" || key_id), 1 if those
// happen to be 0 (kOpenModeCacheSalt). Stable across restarts and servers, so
// a key's cached blocks stay its own. Knowing another key's salt gains
// nothing: the server, not the client, picks the salt from the key.
uint64_t CacheSaltForKey(absl::string_view key_id);

// Lowercase hex, and back (nullopt for an odd length or a non-hex
// character; either case is accepted).
std::string HexEncode(absl::string_view bytes);
std::optional<std::string> HexDecode(absl::string_view hex);

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_API_KEY_H_
