// The key store: issue, authenticate, revoke; the file's format, its atomic
// 0600 writes, and its errors.
#include "server/auth/key_store.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "server/auth/api_key.h"

namespace conclave::server::auth {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1750000000);  // 2025-06-15T15:06:40Z

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/key_store_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/keys.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Issue(KeyStore& store, const std::string& name, QuotaOverrides limits = {}) {
    absl::StatusOr<std::string> key = store.Issue(name, limits, kNow);
    EXPECT_TRUE(key.ok()) << key.status();
    return key.ok() ? *key : "";
  }

  std::string dir_;
  std::string path_;
};

TEST_F(KeyStoreTest, AnIssuedKeyAuthenticatesAsItself) {
  KeyStore store;
  QuotaOverrides limits;
  limits.max_agents = 3;
  const std::string alice = Issue(store, "alice", limits);
  const std::string bob = Issue(store, "bob");
  ASSERT_EQ(store.keys().size(), 2u);

  absl::StatusOr<KeyInfo> info = store.Authenticate("Bearer " + alice);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, store.keys()[0].id);
  EXPECT_EQ(alice.substr(4, 12), info->id);
  EXPECT_EQ(info->name, "alice");
  EXPECT_EQ(info->limits, limits);
  EXPECT_EQ(info->cache_salt, CacheSaltForKey(info->id));

  info = store.Authenticate("Bearer " + bob);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, "bob");
  EXPECT_EQ(info->limits, QuotaOverrides());
}

TEST_F(KeyStoreTest, AnUnknownKeyIsUnauthenticated) {
  KeyStore store;
  Issue(store, "alice");
  absl::StatusOr<ApiKey> stranger = GenerateApiKey();
  ASSERT_TRUE(stranger.ok());
  absl::StatusOr<KeyInfo> info = store.Authenticate("Bearer " + FormatApiKey(*stranger));
  ASSERT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated) << info.status();
  EXPECT_TRUE(Contains(info.status().message(), "invalid API key"));
  EXPECT_FALSE(Contains(info.status().message(), stranger->secret));
}

TEST_F(KeyStoreTest, AWrongSecretGetsTheSameAnswerAsAnUnknownKey) {
  KeyStore store;
  const std::string key = Issue(store, "alice");
  std::string wrong = key;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  absl::StatusOr<KeyInfo> info = store.Authenticate("Bearer " + wrong);
  ASSERT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated) << info.status();
  EXPECT_FALSE(Contains(info.status().message(), wrong.substr(17)));
  EXPECT_FALSE(Contains(info.status().message(), key.substr(17)));
  absl::StatusOr<ApiKey> stranger = GenerateApiKey();
  ASSERT_TRUE(stranger.ok());
  const absl::Status unknown = store.Authenticate("Bearer " + FormatApiKey(*stranger)).status();
  EXPECT_EQ(absl::StrReplaceAll(info.status().message(), {{key.substr(4, 12), "ID"}}),
            absl::StrReplaceAll(unknown.message(), {{stranger->id, "ID"}}));
}

TEST_F(KeyStoreTest, AMissingOrMalformedHeaderIsUnauthenticated) {
  KeyStore store;
  const std::string key = Issue(store, "alice");
  for (const std::string& header : {std::string(), key, "Basic " + key, "Bearer " + key + "=="}) {
    absl::StatusOr<KeyInfo> info = store.Authenticate(header);
    EXPECT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_FALSE(Contains(info.status().message(), key.substr(17))) << info.status();
  }
}

TEST_F(KeyStoreTest, ARevokedKeyIsPermissionDeniedOnlyToWhoeverHoldsIt) {
  KeyStore store;
  const std::string key = Issue(store, "alice");
  const std::string id = key.substr(4, 12);
  ASSERT_TRUE(store.Revoke(id, kNow + absl::Seconds(5)).ok());
  absl::StatusOr<KeyInfo> info = store.Authenticate("Bearer " + key);
  ASSERT_EQ(info.status().code(), absl::StatusCode::kPermissionDenied) << info.status();
  EXPECT_TRUE(Contains(info.status().message(), "revoked")) << info.status();
  EXPECT_TRUE(Contains(info.status().message(), "2025-06-15T15:06:45Z")) << info.status();
  // Without the secret, a revoked key is just an invalid one.
  std::string wrong = key;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(store.Authenticate("Bearer " + wrong).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(KeyStoreTest, RevokingAnUnknownOrRevokedKeyChangesNothing) {
  KeyStore store;
  const std::string id = Issue(store, "alice").substr(4, 12);
  EXPECT_EQ(store.Revoke("zzzzzzzzzzzz", kNow).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store.Revoke(id, kNow).ok());
  const absl::Status again = store.Revoke(id, kNow + absl::Hours(1));
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Find(id)->revoked_at, kNow);
}

TEST_F(KeyStoreTest, IssueRefusesBadNamesAndLimits) {
  KeyStore store;
  for (const std::string& name :
       {std::string(), std::string(201, 'x'), std::string("tab\there"), std::string("\xff\xfe"),
        std::string("\xc0\xaf"), std::string("new\nline")}) {
    EXPECT_EQ(store.Issue(name, {}, kNow).status().code(), absl::StatusCode::kInvalidArgument)
        << name;
  }
  QuotaOverrides negative;
  negative.tokens_per_minute = -1;
  const absl::Status s = store.Issue("alice", negative, kNow).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "tokens_per_minute=-1")) << s;
  QuotaOverrides huge;
  huge.max_agents = kMaxLimitValue + 1;
  EXPECT_EQ(store.Issue("alice", huge, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store.keys().empty());
  EXPECT_TRUE(store.Issue("Zoë — team Ω", {}, kNow).ok());
}

TEST_F(KeyStoreTest, SaveAndLoadRoundTripEveryField) {
  KeyStore store;
  QuotaOverrides limits{60, 0, 2, 4, 1024};
  const std::string alice = Issue(store, "alice", limits);
  const std::string bob = Issue(store, "bob \"the builder\"");
  ASSERT_TRUE(store.Revoke(bob.substr(4, 12), kNow + absl::Minutes(1)).ok());
  ASSERT_TRUE(store.Save(path_).ok());

  absl::StatusOr<KeyStore> loaded = KeyStore::Load(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->keys().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const KeyRecord& a = store.keys()[i];
    const KeyRecord& b = loaded->keys()[i];
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.salt, b.salt);
    EXPECT_EQ(a.secret_hash, b.secret_hash);
    EXPECT_EQ(a.created, b.created);
    EXPECT_EQ(a.revoked, b.revoked);
    EXPECT_EQ(a.revoked_at, b.revoked_at);
    EXPECT_EQ(a.limits, b.limits);
  }
  EXPECT_EQ(loaded->Serialize(), store.Serialize());
  EXPECT_TRUE(loaded->Authenticate("Bearer " + alice).ok());
  EXPECT_EQ(loaded->Authenticate("Bearer " + bob).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(KeyStoreTest, TheFileHoldsNeitherTheKeyNorItsSecret) {
  KeyStore store;
  std::vector<std::string> keys;
  for (int i = 0; i < 5; ++i) keys.push_back(Issue(store, absl::StrCat("user", i)));
  ASSERT_TRUE(store.Save(path_).ok());
  const std::string file = ReadFile(path_);
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string secret = keys[i].substr(17);
    EXPECT_FALSE(Contains(file, secret)) << "secret of key " << i << " in the file";
    // Not even a part of it.
    EXPECT_FALSE(Contains(file, secret.substr(0, 12)));
    EXPECT_FALSE(Contains(file, secret.substr(secret.size() - 12)));
    // What it does hold: the id and the digest.
    EXPECT_TRUE(Contains(file, keys[i].substr(4, 12)));
    EXPECT_TRUE(Contains(file, HexEncode(store.keys()[i].secret_hash)));
  }
}

TEST_F(KeyStoreTest, SaveWritesMode0600WhateverTheUmask) {
  KeyStore store;
  Issue(store, "alice");
  WriteFile(path_, "old");
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  const mode_t old_umask = ::umask(0);
  const absl::Status saved = store.Save(path_);
  ::umask(old_umask);
  ASSERT_TRUE(saved.ok()) << saved;
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(KeyStoreTest, SaveReplacesTheFileByRenameAndLeavesNoTemporaryFile) {
  KeyStore store;
  Issue(store, "alice");
  ASSERT_TRUE(store.Save(path_).ok());
  struct stat before;
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  Issue(store, "bob");
  ASSERT_TRUE(store.Save(path_).ok());
  struct stat after;
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino) << "rewritten in place";
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"keys.json"});
  absl::StatusOr<KeyStore> loaded = KeyStore::Load(path_);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->keys().size(), 2u);
}

TEST_F(KeyStoreTest, SaveIntoAMissingFolderFails) {
  KeyStore store;
  const absl::Status s = store.Save(dir_ + "/no/such/folder/keys.json");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.message(), "no/such/folder")) << s;
}

TEST_F(KeyStoreTest, LoadingAMissingFileIsNotFound) {
  const absl::Status s = KeyStore::Load(path_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s.message(), path_)) << s;
}

TEST_F(KeyStoreTest, AFolderIsNotAStore) {
  EXPECT_EQ(KeyStore::Load(dir_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyStoreTest, AnEmptyStoreRoundTrips) {
  ASSERT_TRUE(KeyStore().Save(path_).ok());
  absl::StatusOr<KeyStore> loaded = KeyStore::Load(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->keys().empty());
}

// A valid key object with `field` set to `value` (raw JSON), or removed
// when `value` is empty.
std::string KeyWith(const std::string& field, const std::string& value) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"id", "\"abcdefghijkl\""},
      {"name", "\"alice\""},
      {"created", "\"2025-06-15T15:06:40Z\""},
      {"revoked", "false"},
      {"salt", "\"" + std::string(32, 'a') + "\""},
      {"hash", "\"" + std::string(64, 'b') + "\""},
  };
  bool replaced = false;
  std::string body;
  for (auto& [name, json] : fields) {
    if (name == field) {
      replaced = true;
      if (value.empty()) continue;
      json = value;
    }
    absl::StrAppend(&body, body.empty() ? "" : ", ", "\"", name, "\": ", json);
  }
  if (!replaced && !value.empty()) absl::StrAppend(&body, ", \"", field, "\": ", value);
  return absl::StrCat("{", body, "}");
}

std::string FileOf(const std::string& keys) {
  return absl::StrCat("{\"version\": 1, \"keys\": [", keys, "]}");
}

std::string KeyFileWith(const std::string& field, const std::string& value) {
  return FileOf(KeyWith(field, value));
}

TEST_F(KeyStoreTest, TheTestsFilesAreValidUnlessBroken) {
  absl::StatusOr<KeyStore> store = KeyStore::Parse(KeyFileWith("", ""), "keys.json");
  ASSERT_TRUE(store.ok()) << store.status();
  std::string revoked = KeyWith("revoked", "true");
  revoked.pop_back();
  revoked += ", \"revoked_at\": \"2025-06-16T00:00:00+02:00\", \"limits\": {\"max_agents\": 2}}";
  store = KeyStore::Parse(FileOf(revoked), "keys.json");
  ASSERT_TRUE(store.ok()) << store.status();
  const KeyRecord& key = store->keys()[0];
  EXPECT_TRUE(key.revoked);
  EXPECT_EQ(key.revoked_at, absl::FromUnixSeconds(1750024800));  // 2025-06-15T22:00:00Z
  EXPECT_EQ(key.limits.max_agents, 2);
  EXPECT_FALSE(key.limits.tokens_per_minute.has_value());
  EXPECT_EQ(key.salt, std::string(16, '\xaa'));
}

TEST_F(KeyStoreTest, MalformedFilesAreRefusedNamingTheFileAndTheProblem) {
  const struct {
    std::string contents;
    std::string says;
  } cases[] = {
      {"", "not valid JSON"},
      {"{\"version\": 1, \"keys\": [", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {"{\"keys\": []}", "\"version\" must be 1"},
      {"{\"version\": 2, \"keys\": []}", "\"version\" must be 1"},
      {"{\"version\": \"1\", \"keys\": []}", "\"version\" must be 1"},
      {"{\"version\": 1}", "\"keys\" must be an array"},
      {"{\"version\": 1, \"keys\": {}}", "\"keys\" must be an array"},
      {"{\"version\": 1, \"keys\": [], \"secret\": 1}", "unknown field \"secret\""},
      {FileOf("1"), "keys[0]: must be an object"},
      {FileOf(KeyWith("name", "\"\xff\"")), "not valid JSON"},  // not UTF-8
      {KeyFileWith("secret", "\"s\""), "keys[0] (id abcdefghijkl).secret: unknown field"},
      {KeyFileWith("id", ""), "keys[0].id: missing"},
      {KeyFileWith("id", "\"ABCDEFGHIJKL\""), "keys[0].id: must be 12 characters"},
      {KeyFileWith("id", "\"abc\""), "keys[0].id: must be 12 characters"},
      {KeyFileWith("name", ""), "keys[0] (id abcdefghijkl).name: missing"},
      {KeyFileWith("name", "\"\""), ".name: a key name has 1 to 200 bytes"},
      {KeyFileWith("name", "7"), ".name: must be a string"},
      {KeyFileWith("created", "\"yesterday\""), ".created: \"yesterday\" is not an RFC 3339"},
      {KeyFileWith("created", ""), ".created: missing"},
      {KeyFileWith("salt", "\"abcd\""), ".salt: must be 32 hex digits"},
      {KeyFileWith("hash", "\"" + std::string(64, 'g') + "\""), ".hash: must be 64 hex digits"},
      {KeyFileWith("hash", ""), ".hash: missing"},
      {KeyFileWith("revoked", ""), ".revoked: missing"},
      {KeyFileWith("revoked", "\"no\""), ".revoked: must be true or false"},
      {KeyFileWith("revoked_at", "\"2025-06-16T00:00:00Z\""), ".revoked_at: given for a key"},
      {KeyFileWith("limits", "[]"), ".limits: must be an object"},
      {KeyFileWith("limits", "{\"request_per_minute\": 5}"),
       ".limits.request_per_minute: unknown limit"},
      {KeyFileWith("limits", "{\"max_agents\": -1}"), ".limits.max_agents: must be an integer"},
      {KeyFileWith("limits", "{\"max_agents\": 2.5}"), ".limits.max_agents: must be an integer"},
      {KeyFileWith("limits", "{\"max_agents\": \"4\"}"), ".limits.max_agents: must be an integer"},
      {KeyFileWith("limits", "{\"max_agents\": 18446744073709551615}"),
       ".limits.max_agents: must be an integer"},
      {FileOf(KeyWith("", "") + ", " + KeyWith("", "")),
       "keys[1] (id abcdefghijkl).id: duplicate id"},
  };
  for (const auto& c : cases) {
    const absl::Status s = KeyStore::Parse(c.contents, "/etc/conclave/keys.json").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.contents << " -> " << s;
    EXPECT_TRUE(Contains(s.message(), "/etc/conclave/keys.json: ")) << s;
    EXPECT_TRUE(Contains(s.message(), c.says)) << c.contents << "\n  -> " << s;
  }
}

TEST_F(KeyStoreTest, UpdateCreatesTheFileOnlyWhenAsked) {
  auto add_alice = [](KeyStore& store) { return store.Issue("alice", {}, kNow).status(); };
  EXPECT_EQ(UpdateKeyStoreFile(path_, /*create=*/false, add_alice).code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(path_));
  ASSERT_TRUE(UpdateKeyStoreFile(path_, /*create=*/true, add_alice).ok());
  ASSERT_TRUE(UpdateKeyStoreFile(path_, /*create=*/false, add_alice).ok());
  absl::StatusOr<KeyStore> loaded = KeyStore::Load(path_);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->keys().size(), 2u);
}

TEST_F(KeyStoreTest, AFailedUpdateSavesNothing) {
  ASSERT_TRUE(UpdateKeyStoreFile(path_, true, [](KeyStore& store) {
                return store.Issue("alice", {}, kNow).status();
              }).ok());
  const std::string before = ReadFile(path_);
  const absl::Status s = UpdateKeyStoreFile(path_, false, [](KeyStore& store) {
    (void)store.Issue("bob", {}, kNow);
    return absl::AbortedError("changed my mind");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ReadFile(path_), before);
}

TEST_F(KeyStoreTest, AnUpdateOfABrokenFileFailsAndLeavesItAlone) {
  WriteFile(path_, "{broken");
  const absl::Status s = UpdateKeyStoreFile(
      path_, true, [](KeyStore& store) { return store.Issue("alice", {}, kNow).status(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile(path_), "{broken");
}

TEST_F(KeyStoreTest, ConcurrentUpdatesLoseNoKey) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 5; ++i) {
        const absl::Status s = UpdateKeyStoreFile(path_, true, [&](KeyStore& store) {
          return store.Issue(absl::StrCat("user", t, "-", i), {}, kNow).status();
        });
        EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  absl::StatusOr<KeyStore> loaded = KeyStore::Load(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->keys().size(), 20u);
}

}  // namespace
}  // namespace conclave::server::auth
