#include "server/auth/api_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::server::auth {
namespace {

constexpr absl::string_view kBase32 = "abcdefghijklmnopqrstuvwxyz234567";
constexpr absl::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// Random bytes below this are used for a base62 digit (byte % 62), the rest
// are drawn again, so that every digit is equally likely: 248 = 4 * 62.
constexpr unsigned kBase62Bound = 248;

constexpr absl::string_view kCacheSaltDomain = "conclave-cache-salt";

bool IsBase32Char(char c) { return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'); }

bool IsBase62Char(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

absl::Status Malformed(absl::string_view what) {
  return absl::UnauthenticatedError(absl::StrCat("malformed API key: ", what, "; a key reads cnk_<",
                                                 kKeyIdLength, "-character id>_<", kSecretLength,
                                                 "-character secret>"));
}

// SHA-256 of the concatenation of `parts`.
std::string Sha256(std::initializer_list<absl::string_view> parts) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  CHECK(ctx != nullptr) << "EVP_MD_CTX_new failed";
  CHECK_EQ(EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr), 1) << "SHA-256 init";
  for (absl::string_view part : parts) {
    CHECK_EQ(EVP_DigestUpdate(ctx, part.data(), part.size()), 1) << "SHA-256 update";
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  CHECK_EQ(EVP_DigestFinal_ex(ctx, digest, &length), 1) << "SHA-256 final";
  EVP_MD_CTX_free(ctx);
  CHECK_EQ(length, kSecretHashBytes);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

}  // namespace

std::string FormatApiKey(const ApiKey& key) {
  return absl::StrCat(kApiKeyPrefix, key.id, "_", key.secret);
}

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  if (n > 0 &&
      RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed: the system random generator is unavailable");
  }
  return bytes;
}

absl::StatusOr<ApiKey> GenerateApiKey() {
  ApiKey key;
  absl::StatusOr<std::string> id_bytes = RandomBytes(kKeyIdLength);
  if (!id_bytes.ok()) return id_bytes.status();
  for (char b : *id_bytes) key.id.push_back(kBase32[static_cast<unsigned char>(b) % 32]);
  while (key.secret.size() < kSecretLength) {
    absl::StatusOr<std::string> bytes = RandomBytes(kSecretLength);
    if (!bytes.ok()) return bytes.status();
    for (char b : *bytes) {
      const unsigned v = static_cast<unsigned char>(b);
      if (v < kBase62Bound && key.secret.size() < kSecretLength)
        key.secret.push_back(kBase62[v % 62]);
    }
  }
  return key;
}

bool IsValidKeyId(absl::string_view id) {
  if (id.size() != kKeyIdLength) return false;
  for (char c : id) {
    if (!IsBase32Char(c)) return false;
  }
  return true;
}

absl::StatusOr<ApiKey> ParseApiKey(absl::string_view text) {
  if (!absl::StartsWith(text, kApiKeyPrefix)) return Malformed("it does not start with \"cnk_\"");
  if (text.size() != kApiKeyLength) {
    return Malformed(absl::StrCat("it has ", text.size(), " characters, not ", kApiKeyLength));
  }
  const absl::string_view id = text.substr(kApiKeyPrefix.size(), kKeyIdLength);
  if (!IsValidKeyId(id)) return Malformed("its id is not lowercase base32 (a-z, 2-7)");
  if (text[kApiKeyPrefix.size() + kKeyIdLength] != '_') {
    return Malformed("the id is not followed by '_'");
  }
  const absl::string_view secret = text.substr(kApiKeyPrefix.size() + kKeyIdLength + 1);
  for (char c : secret) {
    if (!IsBase62Char(c)) return Malformed("its secret is not base62 (0-9, A-Z, a-z)");
  }
  return ApiKey{std::string(id), std::string(secret)};
}

absl::StatusOr<ApiKey> ParseBearer(absl::string_view authorization) {
  const absl::string_view value = absl::StripAsciiWhitespace(authorization);
  if (value.empty()) {
    return absl::UnauthenticatedError(
        "missing API key: send the header \"authorization: Bearer <key>\"");
  }
  constexpr absl::string_view kScheme = "bearer";
  if (absl::EqualsIgnoreCase(value, kScheme)) {
    return absl::UnauthenticatedError("missing API key after \"Bearer\"");
  }
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
    // The value is not repeated: a client that forgot "Bearer " sent its key.
    return absl::UnauthenticatedError(
        "the authorization header must read \"Bearer <key>\" (another scheme, or none, was "
        "given)");
  }
  return ParseApiKey(absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size())));
}

std::string HashSecret(absl::string_view salt, absl::string_view secret) {
  return Sha256({salt, secret});
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool VerifySecret(absl::string_view secret, absl::string_view salt, absl::string_view digest) {
  return ConstantTimeEquals(HashSecret(salt, secret), digest);
}

uint64_t CacheSaltForKey(absl::string_view key_id) {
  const std::string digest = Sha256({kCacheSaltDomain, key_id});
  uint64_t salt = 0;
  for (int i = 0; i < 8; ++i) salt = (salt << 8) | static_cast<unsigned char>(digest[i]);
  return salt == kOpenModeCacheSalt ? 1 : salt;
}

std::string HexEncode(absl::string_view bytes) {
  constexpr absl::string_view kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const unsigned v = static_cast<unsigned char>(c);
    hex.push_back(kHex[v >> 4]);
    hex.push_back(kHex[v & 15]);
  }
  return hex;
}

std::optional<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(hi << 4 | lo));
  }
  return bytes;
}

}  // namespace conclave::server::auth
