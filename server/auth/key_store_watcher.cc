#include "server/auth/key_store_watcher.h"

#include <sys/stat.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace conclave::server::auth {
namespace {

int64_t Nanos(Clock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<KeyStoreWatcher>> KeyStoreWatcher::Create(std::string path,
                                                                         Options options) {
  FileIdentity identity;
  absl::StatusOr<KeyStore> store = KeyStore::Load(path, &identity);
  if (!store.ok()) return store.status();
  return std::unique_ptr<KeyStoreWatcher>(
      new KeyStoreWatcher(std::move(path), options, *std::move(store), identity));
}

KeyStoreWatcher::KeyStoreWatcher(std::string path, Options options, KeyStore store,
                                 FileIdentity identity)
    : path_(std::move(path)),
      check_interval_(options.check_interval),
      clock_(options.clock != nullptr ? *options.clock : SteadyClock()),
      next_check_ns_(Nanos(clock_.Now()) + check_interval_.count()),
      seen_(identity),
      store_(std::make_shared<const KeyStore>(std::move(store))) {}

absl::StatusOr<KeyInfo> KeyStoreWatcher::Authenticate(absl::string_view authorization) {
  return Current()->Authenticate(authorization);
}

std::shared_ptr<const KeyStore> KeyStoreWatcher::Current() {
  MaybeCheck();
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return store_;
}

absl::Status KeyStoreWatcher::last_error() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return last_error_;
}

void KeyStoreWatcher::MaybeCheck() {
  const Clock::TimePoint now = clock_.Now();
  if (Nanos(now) < next_check_ns_.load(std::memory_order_acquire)) return;
  std::unique_lock<std::mutex> lock(reload_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread is checking
  // It may have just finished one.
  if (Nanos(now) < next_check_ns_.load(std::memory_order_acquire)) return;
  (void)CheckLocked(now);
}

absl::Status KeyStoreWatcher::CheckNow() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  return CheckLocked(clock_.Now());
}

absl::Status KeyStoreWatcher::CheckLocked(Clock::TimePoint now) {
  next_check_ns_.store(Nanos(now) + check_interval_.count(), std::memory_order_release);
  struct stat st;
  FileIdentity identity;
  absl::Status stat_error;
  if (::stat(path_.c_str(), &st) == 0) {
    identity = IdentityOf(st);
  } else {
    // A file that cannot be stat'ed is one "version" per errno, so that its
    // error is logged once, not at every check.
    const int err = errno;
    identity = FileIdentity{0, 0, -static_cast<int64_t>(err), 0, 0};
    stat_error = err == ENOENT
                     ? absl::NotFoundError(absl::StrCat("key store ", path_, " does not exist"))
                     : absl::ErrnoToStatus(err, absl::StrCat("cannot stat key store ", path_));
  }
  if (identity == seen_) return last_error();
  seen_ = identity;

  absl::StatusOr<KeyStore> store =
      stat_error.ok() ? KeyStore::Load(path_, &seen_) : absl::StatusOr<KeyStore>(stat_error);
  if (!store.ok()) {
    spdlog::error("key store reload failed, the previous keys stay in use: {}",
                  store.status().ToString());
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    last_error_ = store.status();
    return store.status();
  }
  const size_t keys = store->keys().size();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    store_ = std::make_shared<const KeyStore>(*std::move(store));
    last_error_ = absl::OkStatus();
  }
  reloads_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("key store {} reloaded: {} keys", path_, keys);
  return absl::OkStatus();
}

}  // namespace conclave::server::auth
