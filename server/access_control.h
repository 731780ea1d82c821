// Who may use the server, and how much: the transport-independent half of
// API keys and per-key quotas (docs/auth.md). The gRPC services call it
// today and the HTTP endpoint will; each passes the value of its
// `authorization` header and maps the statuses through status_map (and
// RetryAfterSeconds to its retry-after trailer or header).
//
// One call goes through it in three steps:
//   Authenticate(authorization)  before anything else looks at the request:
//                                UNAUTHENTICATED / PERMISSION_DENIED
//   caller.Admit(request)        once the request is validated: its key's
//                                quotas (INVALID_ARGUMENT, RESOURCE_EXHAUSTED
//                                with a retry-after payload)
//   caller.Finish(code, usage)   when the call ends, however it ends: charges
//                                what it actually used, records per-key
//                                metrics
// and between them caller.cache_salt() goes on every engine request, so a
// key only ever reuses prefix-cache blocks computed under the same key.
//
// Open mode (no key store): every caller is let in with cache salt 0 and no
// quota beyond the server's own limits; per-key metrics are not recorded.
// Thread-safe. The AccessControl must outlive its Callers.
#ifndef CONCLAVE_SERVER_ACCESS_CONTROL_H_
#define CONCLAVE_SERVER_ACCESS_CONTROL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/api_key.h"
#include "server/auth/clock.h"
#include "server/auth/key_store.h"
#include "server/auth/key_store_watcher.h"
#include "server/auth/quota.h"
#include "server/metrics/server_metrics.h"

namespace conclave::server {

class AccessControl;

// One call's identity and, once admitted, its hold on its key's quotas.
// Movable. Destroyed without Finish (ListModels, which is authenticated but
// not charged), it releases its lease, which keeps its whole estimate
// charged, and counts nothing.
class Caller {
 public:
  Caller(Caller&& other) noexcept;
  Caller& operator=(Caller&& other) noexcept;
  Caller(const Caller&) = delete;
  Caller& operator=(const Caller&) = delete;
  ~Caller();

  bool open_mode() const { return key_id_.empty(); }
  // The key's public id; "" in open mode. Never the secret.
  const std::string& key_id() const { return key_id_; }
  // The prefix-cache salt of every engine request of this call.
  uint64_t cache_salt() const { return cache_salt_; }
  // The key's limits (server defaults with its overrides).
  const auth::QuotaLimits& limits() const { return limits_; }

  // Admits the request under the key's quotas (QuotaManager::Admit's
  // errors, with the key's id in their messages); OK at once in open mode.
  // At most once per caller.
  absl::Status Admit(const auth::AdmissionRequest& request);

  // The call ended with `code` after using `usage` (zeros for a call that
  // never reached the engine): the lease, if any, is charged `usage`
  // instead of its estimate; per-key metrics count the call and its tokens.
  // Once per caller.
  void Finish(absl::StatusCode code, const auth::TokenUsage& usage);

 private:
  friend class AccessControl;
  Caller(AccessControl* access, std::string key_id, uint64_t cache_salt, auth::QuotaLimits limits);

  AccessControl* access_;  // null once finished or moved from
  std::string key_id_;
  uint64_t cache_salt_ = auth::kOpenModeCacheSalt;
  auth::QuotaLimits limits_;
  std::optional<auth::Lease> lease_;
};

class AccessControl {
 public:
  struct Options {
    // The key store file; empty: open mode.
    std::string key_store_path;
    // Every key's limits before its own overrides.
    auth::QuotaLimits default_limits;
    // How often the request path looks at the key store file.
    std::chrono::milliseconds check_interval{1000};
    // Null: the steady clock. Must outlive the AccessControl.
    const auth::Clock* clock = nullptr;
    // Where rejections, reloads and per-key usage are counted; null: nowhere.
    // Must outlive the AccessControl.
    ServerMetrics* metrics = nullptr;
  };

  // Loads the key store (KeyStoreWatcher::Create's errors: a server must
  // not start on a missing or broken store), or sets up open mode when
  // options.key_store_path is empty. Whether open mode is allowed on the
  // server's address is the caller's check (auth::CheckOpenModeAllowed),
  // done before anything binds.
  static absl::StatusOr<std::unique_ptr<AccessControl>> Create(Options options);

  // Open mode, no metrics (tests, in-process servers).
  static std::unique_ptr<AccessControl> Open();

  bool open_mode() const { return watcher_ == nullptr; }

  // Checks `authorization`, the value of the call's `authorization` header
  // or metadata entry (nullopt when there is none):
  //   UNAUTHENTICATED    missing, malformed, unknown key or wrong secret
  //   PERMISSION_DENIED  a revoked key
  // The messages name the key's id at most, never what the client sent.
  // Open mode: always a Caller with salt 0.
  absl::StatusOr<Caller> Authenticate(std::optional<absl::string_view> authorization);

  // One line for the startup log: the mode, and for keys the store's path
  // and how many keys it holds (no secret material).
  std::string Describe();

  // The quota usage of every key seen (tests, diagnostics).
  std::vector<auth::KeyUsage> UsageSnapshot() const { return quotas_.UsageSnapshot(); }

  // The watcher, null in open mode (tests: CheckNow).
  auth::KeyStoreWatcher* watcher() const { return watcher_.get(); }

 private:
  friend class Caller;
  explicit AccessControl(Options options, std::unique_ptr<auth::KeyStoreWatcher> watcher);

  // Counts reloads the watcher did since the last look, and gives the keys
  // of a new store their metric series.
  void NoteReloads();
  void Reject(AuthRejection reason);

  const Options options_;
  const std::unique_ptr<auth::KeyStoreWatcher> watcher_;  // null: open mode
  auth::QuotaManager quotas_;
  std::atomic<int64_t> reloads_seen_{0};
};

// The most tokens a request may use, for admission (Lease::Finish charges
// the actual count instead). Prompt tokens are guessed from the prompt's
// UTF-8 bytes at 4 bytes a token, rounded up (English BPE averages about
// 4; text that encodes denser is reconciled at Finish), and capped at
// `max_prompt_tokens` (a longer prompt is refused before it runs);
// `prompt_passes` counts the engine requests that prefill it (thinking
// mode's answer phase prefills it again). Generated: `agents` x
// `max_tokens`. Aggregator passes and forced answers of Contemplate are not
// estimated: they are charged when the call finishes.
int64_t EstimateTokens(int64_t prompt_bytes, int64_t max_prompt_tokens, int prompt_passes,
                       int64_t agents, int64_t max_tokens);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_ACCESS_CONTROL_H_
