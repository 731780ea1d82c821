// The API key store: one JSON file listing every key the operator issued,
// with what the server needs to check it (salt and SHA-256 of the secret,
// never the secret), its name, times, revocation and limit overrides.
// docs/auth.md shows the format. `conclave keys` edits it; the server reads
// it (KeyStoreWatcher reloads it when it changes).
//
// A KeyStore is a value: the file's contents in memory. Not thread-safe to
// mutate; a const KeyStore may be shared between threads.
#ifndef CONCLAVE_SERVER_AUTH_KEY_STORE_H_
#define CONCLAVE_SERVER_AUTH_KEY_STORE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/auth/quota.h"

namespace conclave::server::auth {

// The version of the file format this code reads and writes.
inline constexpr int kKeyStoreVersion = 1;

// Store files larger than this are refused (a store of ~40k keys).
inline constexpr int64_t kMaxKeyStoreBytes = 16 << 20;

// One key as stored.
struct KeyRecord {
  std::string id;           // public id (api_key.h)
  std::string name;         // the operator's label: who has the key
  std::string salt;         // kSaltBytes raw bytes
  std::string secret_hash;  // HashSecret(salt, secret), raw bytes
  absl::Time created;       // whole seconds, as stored
  bool revoked = false;
  std::optional<absl::Time> revoked_at;  // set by Revoke (whole seconds); optional in files
  QuotaOverrides limits;
};

// What an authenticated request knows about its key. No secret material.
struct KeyInfo {
  std::string id;
  std::string name;
  QuotaOverrides limits;    // ApplyOverrides(server defaults, limits)
  uint64_t cache_salt = 0;  // CacheSaltForKey(id)
};

// Identifies one version of a file: a change of any field means the file
// was replaced (inode, ctime) or rewritten (size, mtime).
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

// The identity of what fstat() / stat() returned.
FileIdentity IdentityOf(const struct stat& st);

class KeyStore {
 public:
  KeyStore() = default;  // no keys

  // Parses a store file's contents. INVALID_ARGUMENT naming `source`, the
  // key (index and id) and the field for anything malformed: bad JSON or
  // UTF-8, unknown or missing fields, a wrong version, a malformed id, salt
  // or hash, a bad time, a negative or huge limit, a duplicate id.
  static absl::StatusOr<KeyStore> Parse(absl::string_view json, absl::string_view source);

  // Reads and parses `path`. NOT_FOUND when it does not exist; the errno's
  // code for other I/O errors; Parse's errors. `identity`, when given, gets
  // the identity of the file that was read (also when parsing fails).
  static absl::StatusOr<KeyStore> Load(const std::string& path, FileIdentity* identity = nullptr);

  // The file's contents: pretty-printed JSON, keys in the order issued.
  std::string Serialize() const;

  // Writes the store to `path` atomically, mode 0600: a temporary file in
  // the same folder, fsync, rename over `path`, fsync of the folder. A reader
  // sees the old file or the new one, never a mixture.
  absl::Status Save(const std::string& path) const;

  // Adds a new key named `name` (1 to 200 bytes of UTF-8 without control
  // characters) with `limits` (each in [0, kMaxLimitValue]); returns the key
  // ("cnk_..."), the only time it exists outside the client.
  // INVALID_ARGUMENT for a bad name or limit, INTERNAL when the random
  // generator fails.
  absl::StatusOr<std::string> Issue(absl::string_view name, const QuotaOverrides& limits,
                                    absl::Time now);

  // Marks key `id` revoked at `now`. NOT_FOUND for an unknown id;
  // FAILED_PRECONDITION when it is already revoked (nothing changes).
  absl::Status Revoke(absl::string_view id, absl::Time now);

  // Checks the value of an `authorization` header ("Bearer cnk_...").
  //   UNAUTHENTICATED    missing or malformed value, unknown key id, wrong
  //                      secret (one message for the last two; the secret
  //                      is never repeated)
  //   PERMISSION_DENIED  a revoked key (only said to a caller who holds its
  //                      secret)
  absl::StatusOr<KeyInfo> Authenticate(absl::string_view authorization) const;

  // The key with `id`, or null.
  const KeyRecord* Find(absl::string_view id) const;

  const std::vector<KeyRecord>& keys() const { return keys_; }

 private:
  // Appends `record`; false when its id is taken.
  bool Add(KeyRecord record);

  std::vector<KeyRecord> keys_;                     // in the file's order
  absl::flat_hash_map<std::string, size_t> by_id_;  // id -> index in keys_
};

// A store time as the file writes it: RFC 3339 in UTC, to the second
// ("2025-06-15T15:06:40Z").
std::string FormatKeyTime(absl::Time t);

// INVALID_ARGUMENT unless `name` is a valid key name (see Issue).
absl::Status ValidateKeyName(absl::string_view name);

// INVALID_ARGUMENT unless every set limit is in [0, kMaxLimitValue].
absl::Status ValidateOverrides(const QuotaOverrides& limits);

// Read-modify-write of the store at `path` under an exclusive lock (flock
// on `path`.lock, so that two `conclave keys` commands never lose each
// other's changes): loads it (an empty store when it does not exist and
// `create` is set), runs `update`, and saves it when `update` returns OK.
absl::Status UpdateKeyStoreFile(const std::string& path, bool create,
                                absl::FunctionRef<absl::Status(KeyStore&)> update);

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_KEY_STORE_H_
