// Serves the key store file to every request thread and picks up the
// operator's changes (`conclave keys issue|revoke`, or an edit) without a
// restart.
//
// On the request path: Authenticate / Current look at the file at most once
// per `check_interval` (one stat(); the thread that finds it due does the
// check, the others go on with the store they have). A file whose identity
// (device, inode, size, mtime, ctime) changed is read and parsed; if it is
// broken, or gone, the previous store stays in use, the error is logged once
// per version of the file and kept in last_error(), and the next change is
// tried again. So a revocation takes effect within check_interval of the
// first request after it.
//
// Thread-safe. Readers never wait for a reload: the store is an immutable
// snapshot (shared_ptr<const KeyStore>) swapped under a lock that guards
// only the pointer.
#ifndef CONCLAVE_SERVER_AUTH_KEY_STORE_WATCHER_H_
#define CONCLAVE_SERVER_AUTH_KEY_STORE_WATCHER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/clock.h"
#include "server/auth/key_store.h"

namespace conclave::server::auth {

class KeyStoreWatcher {
 public:
  struct Options {
    std::chrono::milliseconds check_interval{1000};
    const Clock* clock = nullptr;  // null: SteadyClock(); must outlive the watcher
  };

  // Loads `path`. Its errors (KeyStore::Load) are the caller's: a server
  // must not start on a missing or broken store.
  static absl::StatusOr<std::unique_ptr<KeyStoreWatcher>> Create(std::string path, Options options);

  // Checks the file when due, then authenticates `authorization` against the
  // current store (KeyStore::Authenticate).
  absl::StatusOr<KeyInfo> Authenticate(absl::string_view authorization);

  // Checks the file when due; the current store (never null).
  std::shared_ptr<const KeyStore> Current();

  // Checks the file now, whatever the interval (waits for a check another
  // thread is doing). OK when it is unchanged and loaded, or was reloaded;
  // else the error that keeps the previous store in use.
  absl::Status CheckNow();

  // The error of the last check (OK once a good file has been loaded).
  absl::Status last_error() const;

  // Successful reloads since Create (metrics, tests).
  int64_t reloads() const { return reloads_.load(std::memory_order_relaxed); }

  const std::string& path() const { return path_; }

 private:
  KeyStoreWatcher(std::string path, Options options, KeyStore store, FileIdentity identity);

  void MaybeCheck();
  // reload_mu_ held.
  absl::Status CheckLocked(Clock::TimePoint now);

  const std::string path_;
  const std::chrono::nanoseconds check_interval_;
  const Clock& clock_;
  std::atomic<int64_t> next_check_ns_;  // clock time of the next due check

  std::mutex reload_mu_;  // one check at a time; guards seen_
  FileIdentity seen_;     // the version of the file last read (or failed to stat)

  mutable std::mutex snapshot_mu_;  // guards store_ and last_error_ (held for copies only)
  std::shared_ptr<const KeyStore> store_;
  absl::Status last_error_;

  std::atomic<int64_t> reloads_{0};
};

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_KEY_STORE_WATCHER_H_
