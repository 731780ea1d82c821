// Reloading the key store: when the file changes, not before the interval,
// keeping the previous keys when the new file is broken or gone.
#include "server/auth/key_store_watcher.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::server::auth {
namespace {

using std::chrono::milliseconds;

const absl::Time kNow = absl::FromUnixSeconds(1750000000);
constexpr milliseconds kInterval(1000);

void WriteInPlace(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

class KeyStoreWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/key_store_watcher_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/keys.json";
    alice_ = Issue("alice");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Adds a key to the file (atomic save) and returns it.
  std::string Issue(const std::string& name) {
    std::string key;
    const absl::Status s = UpdateKeyStoreFile(path_, true, [&](KeyStore& store) {
      absl::StatusOr<std::string> issued = store.Issue(name, {}, kNow);
      if (issued.ok()) key = *issued;
      return issued.status();
    });
    EXPECT_TRUE(s.ok()) << s;
    return key;
  }

  void Revoke(const std::string& key) {
    const absl::Status s = UpdateKeyStoreFile(
        path_, false, [&](KeyStore& store) { return store.Revoke(key.substr(4, 12), kNow); });
    EXPECT_TRUE(s.ok()) << s;
  }

  std::unique_ptr<KeyStoreWatcher> Watch() {
    absl::StatusOr<std::unique_ptr<KeyStoreWatcher>> watcher =
        KeyStoreWatcher::Create(path_, {.check_interval = kInterval, .clock = &clock_});
    EXPECT_TRUE(watcher.ok()) << watcher.status();
    return watcher.ok() ? *std::move(watcher) : nullptr;
  }

  absl::StatusCode Code(KeyStoreWatcher& watcher, const std::string& key) {
    return watcher.Authenticate("Bearer " + key).status().code();
  }

  ManualClock clock_;
  std::string dir_;
  std::string path_;
  std::string alice_;
};

TEST_F(KeyStoreWatcherTest, CreateRefusesAMissingOrBrokenStore) {
  const KeyStoreWatcher::Options options{.check_interval = kInterval, .clock = &clock_};
  EXPECT_EQ(KeyStoreWatcher::Create(dir_ + "/missing.json", options).status().code(),
            absl::StatusCode::kNotFound);
  WriteInPlace(path_, "{\"version\": 1, \"keys\": [}");
  EXPECT_EQ(KeyStoreWatcher::Create(path_, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyStoreWatcherTest, ANewKeyWorksOnceTheIntervalHasPassed) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  const std::string bob = Issue("bob");
  // The file is looked at most once per interval.
  EXPECT_EQ(Code(*watcher, bob), absl::StatusCode::kUnauthenticated);
  clock_.Advance(kInterval - milliseconds(1));
  EXPECT_EQ(Code(*watcher, bob), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(watcher->reloads(), 0);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(Code(*watcher, bob), absl::StatusCode::kOk);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  EXPECT_EQ(watcher->reloads(), 1);
  EXPECT_TRUE(watcher->last_error().ok());
}

TEST_F(KeyStoreWatcherTest, ARevocationTakesEffectAtTheNextCheck) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  Revoke(alice_);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  clock_.Advance(kInterval);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kPermissionDenied);
}

TEST_F(KeyStoreWatcherTest, AnUnchangedFileIsNotReadAgain) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  const std::shared_ptr<const KeyStore> first = watcher->Current();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(kInterval);
    EXPECT_EQ(watcher->Current(), first);  // the same snapshot, not a re-read
    EXPECT_TRUE(watcher->CheckNow().ok());
  }
  EXPECT_EQ(watcher->reloads(), 0);
}

TEST_F(KeyStoreWatcherTest, ABrokenFileKeepsThePreviousKeysUntilItIsFixed) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  const std::string good = KeyStore::Load(path_)->Serialize();
  WriteInPlace(path_, good.substr(0, good.size() / 2));  // a half-written file
  clock_.Advance(kInterval);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  EXPECT_EQ(watcher->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(watcher->last_error().message()).find(path_), std::string::npos)
      << watcher->last_error();
  EXPECT_EQ(watcher->reloads(), 0);
  // Still broken, still the same error; no reload attempt is a success.
  clock_.Advance(kInterval);
  EXPECT_EQ(watcher->CheckNow().code(), absl::StatusCode::kInvalidArgument);

  WriteInPlace(path_, good);
  const std::string carol = Issue("carol");
  clock_.Advance(kInterval);
  EXPECT_EQ(Code(*watcher, carol), absl::StatusCode::kOk);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  EXPECT_TRUE(watcher->last_error().ok());
  EXPECT_EQ(watcher->reloads(), 1);
}

TEST_F(KeyStoreWatcherTest, ADeletedFileKeepsThePreviousKeys) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  ASSERT_TRUE(std::filesystem::remove(path_));
  clock_.Advance(kInterval);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kOk);
  EXPECT_EQ(watcher->last_error().code(), absl::StatusCode::kNotFound);
  const std::string bob = Issue("bob");  // a new store with only bob
  clock_.Advance(kInterval);
  EXPECT_EQ(Code(*watcher, bob), absl::StatusCode::kOk);
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kUnauthenticated);
}

TEST_F(KeyStoreWatcherTest, AnEditInPlaceIsNoticed) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  KeyStore edited = *KeyStore::Load(path_);
  ASSERT_TRUE(edited.Revoke(alice_.substr(4, 12), kNow).ok());
  WriteInPlace(path_, edited.Serialize());  // same inode, new size and mtime
  ASSERT_TRUE(watcher->CheckNow().ok());
  EXPECT_EQ(Code(*watcher, alice_), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(watcher->reloads(), 1);
}

TEST_F(KeyStoreWatcherTest, ReadersKeepWorkingWhileTheStoreIsReloaded) {
  std::unique_ptr<KeyStoreWatcher> watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> checks{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        if (!watcher->Authenticate("Bearer " + alice_).ok()) ++failures;
        ++checks;
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    Issue("user" + std::to_string(i));
    clock_.Advance(kInterval);  // the readers' next call reloads
    ASSERT_TRUE(watcher->CheckNow().ok());
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(checks.load(), 0);
  EXPECT_EQ(watcher->Current()->keys().size(), 21u);
  EXPECT_EQ(watcher->reloads(), 20);
}

}  // namespace
}  // namespace conclave::server::auth
