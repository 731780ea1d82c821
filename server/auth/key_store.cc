#include "server/auth/key_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/auth/api_key.h"

namespace conclave::server::auth {
namespace {

using Json = nlohmann::json;
// Serialization keeps the fields in a fixed, readable order.
using OrderedJson = nlohmann::ordered_json;

constexpr size_t kMaxNameBytes = 200;
// Every field of a key object, in the order Serialize writes them.
constexpr const char* kKeyFields[] = {"id",         "name",   "created", "revoked",
                                      "revoked_at", "limits", "salt",    "hash"};

// Times are stored to the second; truncating in memory too keeps a store
// equal to what it reads back.
absl::Time WholeSeconds(absl::Time t) { return absl::FromUnixSeconds(absl::ToUnixSeconds(t)); }

// Reads one key's fields, naming `source` and the key in every error.
class KeyParser {
 public:
  KeyParser(absl::string_view source, size_t index) : source_(source), index_(index) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": keys[", index_, "]",
                     id_.empty() ? "" : absl::StrCat(" (id ", id_, ")"), ".", field, ": ", what));
  }

  absl::StatusOr<KeyRecord> Parse(const Json& key) {
    if (!key.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_, ": keys[", index_, "]: must be an object"));
    }
    // The id first, to name the key in every later error.
    if (key.contains("id") && key["id"].is_string() && IsValidKeyId(key["id"].get<std::string>())) {
      id_ = key["id"].get<std::string>();
    }
    for (const auto& [field, value] : key.items()) {
      if (std::find_if(std::begin(kKeyFields), std::end(kKeyFields),
                       [&](const char* f) { return field == f; }) == std::end(kKeyFields)) {
        return Error(field,
                     absl::StrCat("unknown field; a key has ", absl::StrJoin(kKeyFields, ", ")));
      }
    }
    KeyRecord record;
    absl::StatusOr<std::string> id = String(key, "id");
    if (!id.ok()) return id.status();
    if (!IsValidKeyId(*id)) {
      return Error("id", absl::StrCat("must be ", kKeyIdLength,
                                      " characters of lowercase base32 (a-z, 2-7)"));
    }
    record.id = *id;

    absl::StatusOr<std::string> name = String(key, "name");
    if (!name.ok()) return name.status();
    if (absl::Status s = ValidateKeyName(*name); !s.ok()) return Error("name", s.message());
    record.name = *name;

    absl::StatusOr<absl::Time> created = Time(key, "created");
    if (!created.ok()) return created.status();
    record.created = *created;

    absl::StatusOr<std::string> salt = Hex(key, "salt", kSaltBytes);
    if (!salt.ok()) return salt.status();
    record.salt = *salt;
    absl::StatusOr<std::string> hash = Hex(key, "hash", kSecretHashBytes);
    if (!hash.ok()) return hash.status();
    record.secret_hash = *hash;

    if (!key.contains("revoked")) return Error("revoked", "missing (true or false)");
    if (!key["revoked"].is_boolean()) return Error("revoked", "must be true or false");
    record.revoked = key["revoked"].get<bool>();
    if (key.contains("revoked_at")) {
      absl::StatusOr<absl::Time> revoked_at = Time(key, "revoked_at");
      if (!revoked_at.ok()) return revoked_at.status();
      if (!record.revoked) return Error("revoked_at", "given for a key that is not revoked");
      record.revoked_at = *revoked_at;
    }

    if (key.contains("limits")) {
      absl::StatusOr<QuotaOverrides> limits = Limits(key["limits"]);
      if (!limits.ok()) return limits.status();
      record.limits = *limits;
    }
    return record;
  }

 private:
  absl::StatusOr<std::string> String(const Json& key, const char* field) const {
    if (!key.contains(field)) return Error(field, "missing");
    const Json& v = key[field];
    if (!v.is_string()) return Error(field, "must be a string");
    return v.get<std::string>();
  }

  absl::StatusOr<absl::Time> Time(const Json& key, const char* field) const {
    absl::StatusOr<std::string> text = String(key, field);
    if (!text.ok()) return text.status();
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, *text, &t, &err)) {
      return Error(field, absl::StrCat("\"", *text, "\" is not an RFC 3339 time (", err, ")"));
    }
    return t;
  }

  absl::StatusOr<std::string> Hex(const Json& key, const char* field, size_t bytes) const {
    absl::StatusOr<std::string> text = String(key, field);
    if (!text.ok()) return text.status();
    std::optional<std::string> decoded = HexDecode(*text);
    if (!decoded.has_value() || decoded->size() != bytes) {
      return Error(field, absl::StrCat("must be ", 2 * bytes, " hex digits"));
    }
    return *decoded;
  }

  absl::StatusOr<QuotaOverrides> Limits(const Json& limits) const {
    if (!limits.is_object()) return Error("limits", "must be an object");
    QuotaOverrides overrides;
    for (const auto& [name, value] : limits.items()) {
      const QuotaField* field = nullptr;
      for (const QuotaField& f : kQuotaFields) {
        if (name == f.name) field = &f;
      }
      const std::string where = absl::StrCat("limits.", name);
      if (field == nullptr) {
        std::vector<std::string> names;
        for (const QuotaField& f : kQuotaFields) names.push_back(f.name);
        return Error(where, absl::StrCat("unknown limit; limits are ", absl::StrJoin(names, ", ")));
      }
      const std::string range =
          absl::StrCat("must be an integer in [0, ", kMaxLimitValue, "] (0: no limit)");
      if (!value.is_number_integer()) return Error(where, range);
      if (value.is_number_unsigned()) {
        const uint64_t v = value.get<uint64_t>();
        if (v > static_cast<uint64_t>(kMaxLimitValue)) return Error(where, range);
        overrides.*field->override = static_cast<int64_t>(v);
      } else {
        const int64_t v = value.get<int64_t>();
        if (v < 0 || v > kMaxLimitValue) return Error(where, range);
        overrides.*field->override = v;
      }
    }
    return overrides;
  }

  absl::string_view source_;
  size_t index_;
  std::string id_;  // once read, to name the key in errors
};

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

FileIdentity IdentityOf(const struct stat& st) {
  auto nanos = [](const struct timespec& t) {
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  };
  return FileIdentity{st.st_dev, st.st_ino, static_cast<int64_t>(st.st_size), nanos(st.st_mtim),
                      nanos(st.st_ctim)};
}

std::string FormatKeyTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::Status ValidateKeyName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a key name has 1 to ", kMaxNameBytes, " bytes, not ", name.size()));
  }
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError("a key name may not contain control characters");
    }
  }
  // nlohmann's serializer checks UTF-8 strictly (overlong forms, surrogates,
  // code points above U+10FFFF), as its parser does when the file is read.
  try {
    (void)Json(std::string(name)).dump();
  } catch (const Json::type_error&) {
    return absl::InvalidArgumentError("a key name must be UTF-8");
  }
  return absl::OkStatus();
}

absl::Status ValidateOverrides(const QuotaOverrides& limits) {
  for (const QuotaField& field : kQuotaFields) {
    const std::optional<int64_t>& v = limits.*field.override;
    if (v.has_value() && (*v < 0 || *v > kMaxLimitValue)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field.name, "=", *v, " must be in [0, ", kMaxLimitValue, "] (0: no limit)"));
    }
  }
  return absl::OkStatus();
}

bool KeyStore::Add(KeyRecord record) {
  if (by_id_.contains(record.id)) return false;
  by_id_.emplace(record.id, keys_.size());
  keys_.push_back(std::move(record));
  return true;
}

absl::StatusOr<KeyStore> KeyStore::Parse(absl::string_view json, absl::string_view source) {
  Json root;
  try {
    root = Json::parse(json.begin(), json.end());
  } catch (const Json::parse_error& e) {
    // e.what() gives the byte offset and what was expected; never a secret,
    // since the file holds none.
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": must be a JSON object with \"version\" and \"keys\""));
  }
  for (const auto& [field, value] : root.items()) {
    if (field != "version" && field != "keys") {
      return absl::InvalidArgumentError(absl::StrCat(source, ": unknown field \"", field,
                                                     "\" (a store has \"version\" and \"keys\")"));
    }
  }
  if (!root.contains("version") || !root["version"].is_number_integer() ||
      root["version"].get<int64_t>() != kKeyStoreVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": \"version\" must be ", kKeyStoreVersion, " (the format this server reads)"));
  }
  if (!root.contains("keys") || !root["keys"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": \"keys\" must be an array"));
  }
  KeyStore store;
  const Json& keys = root["keys"];
  for (size_t i = 0; i < keys.size(); ++i) {
    KeyParser parser(source, i);
    absl::StatusOr<KeyRecord> record = parser.Parse(keys[i]);
    if (!record.ok()) return record.status();
    if (!store.Add(*std::move(record))) return parser.Error("id", "duplicate id");
  }
  return store;
}

absl::StatusOr<KeyStore> KeyStore::Load(const std::string& path, FileIdentity* identity) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("key store ", path, " does not exist"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open key store ", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat key store ", path));
  }
  if (identity != nullptr) *identity = IdentityOf(st);
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("key store ", path, " is not a regular file"));
  }
  std::string contents;
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat("cannot read key store ", path));
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
    if (static_cast<int64_t>(contents.size()) > kMaxKeyStoreBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("key store ", path, " is larger than ", kMaxKeyStoreBytes, " bytes"));
    }
  }
  ::close(fd);
  return Parse(contents, path);
}

std::string KeyStore::Serialize() const {
  OrderedJson keys = OrderedJson::array();
  for (const KeyRecord& record : keys_) {
    OrderedJson key = {{"id", record.id},
                       {"name", record.name},
                       {"created", FormatKeyTime(record.created)},
                       {"revoked", record.revoked}};
    if (record.revoked_at.has_value()) key["revoked_at"] = FormatKeyTime(*record.revoked_at);
    OrderedJson limits = OrderedJson::object();
    for (const QuotaField& field : kQuotaFields) {
      const std::optional<int64_t>& v = record.limits.*field.override;
      if (v.has_value()) limits[field.name] = *v;
    }
    if (!limits.empty()) key["limits"] = limits;
    key["salt"] = HexEncode(record.salt);
    key["hash"] = HexEncode(record.secret_hash);
    keys.push_back(std::move(key));
  }
  const OrderedJson root = {{"version", kKeyStoreVersion}, {"keys", std::move(keys)}};
  return root.dump(2) + "\n";
}

absl::Status KeyStore::Save(const std::string& path) const {
  const std::string contents = Serialize();
  absl::StatusOr<std::string> nonce = RandomBytes(4);
  if (!nonce.ok()) return nonce.status();
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid(), ".", HexEncode(*nonce));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", temp));
  // Removes the temporary file on every failure below.
  auto fail = [&](absl::Status status, bool close_fd) {
    if (close_fd) ::close(fd);
    ::unlink(temp.c_str());
    return status;
  };
  // The mode argument of open() is filtered by the umask, which may only
  // take permissions away; fchmod makes it exactly owner read/write.
  if (::fchmod(fd, 0600) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("cannot chmod ", temp)), true);
  }
  if (absl::Status s = WriteAll(fd, contents, temp); !s.ok()) return fail(s, true);
  if (::fsync(fd) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("cannot fsync ", temp)), true);
  }
  if (::close(fd) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("cannot close ", temp)), false);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("cannot rename ", temp, " to ", path)),
                false);
  }
  // The rename is durable once the folder is synced.
  const std::string dir = DirName(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open folder ", dir));
  const int synced = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (synced != 0) return absl::ErrnoToStatus(err, absl::StrCat("cannot fsync folder ", dir));
  return absl::OkStatus();
}

absl::StatusOr<std::string> KeyStore::Issue(absl::string_view name, const QuotaOverrides& limits,
                                            absl::Time now) {
  if (absl::Status s = ValidateKeyName(name); !s.ok()) return s;
  if (absl::Status s = ValidateOverrides(limits); !s.ok()) return s;
  absl::StatusOr<ApiKey> key = GenerateApiKey();
  // Ids are 60 random bits: a collision is a 2^-60-per-key event, but
  // costs nothing to rule out.
  while (key.ok() && Find(key->id) != nullptr) key = GenerateApiKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> salt = RandomBytes(kSaltBytes);
  if (!salt.ok()) return salt.status();
  KeyRecord record;
  record.id = key->id;
  record.name = std::string(name);
  record.salt = *salt;
  record.secret_hash = HashSecret(record.salt, key->secret);
  record.created = WholeSeconds(now);
  record.limits = limits;
  Add(std::move(record));
  return FormatApiKey(*key);
}

absl::Status KeyStore::Revoke(absl::string_view id, absl::Time now) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("no key with id ", id));
  KeyRecord& record = keys_[it->second];
  if (record.revoked) {
    return absl::FailedPreconditionError(
        absl::StrCat("key ", id, " is already revoked",
                     record.revoked_at.has_value()
                         ? absl::StrCat(" (since ", FormatKeyTime(*record.revoked_at), ")")
                         : ""));
  }
  record.revoked = true;
  record.revoked_at = WholeSeconds(now);
  return absl::OkStatus();
}

const KeyRecord* KeyStore::Find(absl::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &keys_[it->second];
}

absl::StatusOr<KeyInfo> KeyStore::Authenticate(absl::string_view authorization) const {
  absl::StatusOr<ApiKey> key = ParseBearer(authorization);
  if (!key.ok()) return key.status();
  const KeyRecord* record = Find(key->id);
  // An unknown id costs the same hash as a known one, and gets the same
  // message as a wrong secret: a caller learns nothing about which ids exist.
  static const std::string kNoSalt(kSaltBytes, '\0');
  static const std::string kNoHash(kSecretHashBytes, '\0');
  if (record == nullptr) (void)VerifySecret(key->secret, kNoSalt, kNoHash);
  if (record == nullptr || !VerifySecret(key->secret, record->salt, record->secret_hash)) {
    return absl::UnauthenticatedError(
        absl::StrCat("invalid API key (id ", key->id, "): no such key, or a wrong secret"));
  }
  if (record->revoked) {
    return absl::PermissionDeniedError(
        absl::StrCat("API key ", record->id, " has been revoked",
                     record->revoked_at.has_value()
                         ? absl::StrCat(" (at ", FormatKeyTime(*record->revoked_at), ")")
                         : "",
                     "; ask the operator for a new key"));
  }
  return KeyInfo{record->id, record->name, record->limits, CacheSaltForKey(record->id)};
}

absl::Status UpdateKeyStoreFile(const std::string& path, bool create,
                                absl::FunctionRef<absl::Status(KeyStore&)> update) {
  const std::string lock_path = path + ".lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", lock_path));
  while (::flock(lock_fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(lock_fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot lock ", lock_path));
  }
  absl::StatusOr<KeyStore> store = KeyStore::Load(path);
  if (!store.ok() && absl::IsNotFound(store.status()) && create) store = KeyStore();
  absl::Status status = store.status();
  if (status.ok()) status = update(*store);
  if (status.ok()) status = store->Save(path);
  ::close(lock_fd);  // releases the lock
  return status;
}

}  // namespace conclave::server::auth
