// Per-key limits and usage: admission of each request under its API key's
// limits, and the key's usage counters for metrics.
//
// Limits of a key (QuotaLimits; the server's defaults, overridden per key in
// the key store). 0 means "no limit from the key": the server's own limits
// (--max-agents, --max-concurrent-requests, ...) apply either way.
//   requests_per_minute      token bucket of that capacity, refilled at
//                            requests_per_minute / 60 per second
//   tokens_per_minute        the same for prompt + generated tokens (every
//                            agent's); a request is charged its estimate at
//                            admission and its actual tokens at the end
//   max_concurrent_requests  requests of the key running at once
//   max_agents               agents of one request
//   max_thinking_budget      thinking budget of one request
//
// Errors of Admit:
//   INVALID_ARGUMENT    a request the key can never run (agents, thinking
//                       budget or token estimate above the key's limit).
//                       Not PERMISSION_DENIED: that code tells the client
//                       its key is revoked; this is the same error as asking
//                       more agents than the server allows, with a tighter
//                       limit, and is fixed by changing the request.
//   RESOURCE_EXHAUSTED  the key is over a rate or concurrency limit now; the
//                       status carries when to retry (RetryAfterSeconds),
//                       for HTTP's Retry-After header and gRPC's metadata.
// Thread-safe.
#ifndef CONCLAVE_SERVER_AUTH_QUOTA_H_
#define CONCLAVE_SERVER_AUTH_QUOTA_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/clock.h"

namespace conclave::server::auth {

// Every limit; the member initializers are the server's defaults for the
// invitation-only preview (docs/auth.md).
struct QuotaLimits {
  int64_t requests_per_minute = 60;
  int64_t tokens_per_minute = 200000;
  int64_t max_concurrent_requests = 4;
  int64_t max_agents = 8;
  int64_t max_thinking_budget = 8192;
};

// A key's overrides of the defaults; nullopt keeps the default.
struct QuotaOverrides {
  std::optional<int64_t> requests_per_minute;
  std::optional<int64_t> tokens_per_minute;
  std::optional<int64_t> max_concurrent_requests;
  std::optional<int64_t> max_agents;
  std::optional<int64_t> max_thinking_budget;

  bool operator==(const QuotaOverrides&) const = default;
};

// The largest value a limit may have (larger values are refused where
// limits are read: key store, command line).
inline constexpr int64_t kMaxLimitValue = int64_t{1} << 40;

// The limits, by name: the key store's JSON and the CLI's flags use these
// names. Order is the order of QuotaLimits' members.
struct QuotaField {
  const char* name;
  int64_t QuotaLimits::*limit;
  std::optional<int64_t> QuotaOverrides::*override;
};
inline constexpr QuotaField kQuotaFields[] = {
    {"requests_per_minute", &QuotaLimits::requests_per_minute,
     &QuotaOverrides::requests_per_minute},
    {"tokens_per_minute", &QuotaLimits::tokens_per_minute, &QuotaOverrides::tokens_per_minute},
    {"max_concurrent_requests", &QuotaLimits::max_concurrent_requests,
     &QuotaOverrides::max_concurrent_requests},
    {"max_agents", &QuotaLimits::max_agents, &QuotaOverrides::max_agents},
    {"max_thinking_budget", &QuotaLimits::max_thinking_budget,
     &QuotaOverrides::max_thinking_budget},
};

// `defaults` with every set field of `overrides` in place.
QuotaLimits ApplyOverrides(const QuotaLimits& defaults, const QuotaOverrides& overrides);

// What a request asks for, as far as quotas are concerned.
struct AdmissionRequest {
  int64_t agents = 1;           // Generate: 1; Contemplate: its agents
  int64_t thinking_budget = 0;  // 0 unless thinking
  // The most prompt + generated tokens the request may use, over all its
  // agents (e.g. prompt + agents * max_tokens): charged at admission,
  // reconciled by Lease::Finish. Admission needs max(estimate, 1) tokens in
  // the bucket, so a key in debt waits whatever it estimates.
  int64_t estimated_tokens = 0;
};

// What a request used, reported when it ends.
struct TokenUsage {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;  // all of it, agents' and aggregation's
  int64_t agent_tokens = 0;      // the agents' share of generated_tokens
};

// A key's counters since the server started (monotonic, except `running`).
// Named by key id only: the secret is never known here.
struct KeyUsage {
  std::string key_id;
  int64_t admitted_requests = 0;
  int64_t rejected_requests = 0;  // any Admit error
  int64_t prompt_tokens = 0;      // of finished requests
  int64_t generated_tokens = 0;
  int64_t agent_tokens = 0;
  int64_t running_requests = 0;  // leases alive now
};

class QuotaManager;

// An admitted request's hold on its key's concurrency slot, released when
// the lease ends (Finish or destruction, whichever comes first). Movable.
// A lease may outlive its QuotaManager.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  // Releases the slot; a lease that was never finished keeps its whole
  // estimate charged (what the request used is unknown) and adds no tokens
  // to the usage counters.
  ~Lease();

  // Ends the request: charges usage.prompt_tokens + usage.generated_tokens
  // instead of the estimate (refunding the difference, or charging the
  // excess), adds `usage` to the key's counters and releases the slot.
  // Once per lease (a second call is a bug).
  void Finish(const TokenUsage& usage);

  const std::string& key_id() const { return key_id_; }
  int64_t estimated_tokens() const { return estimated_tokens_; }

 private:
  friend class QuotaManager;
  struct Shared;
  struct KeyState;
  Lease(std::shared_ptr<Shared> shared, KeyState* key, std::string key_id,
        int64_t estimated_tokens);
  void Release();

  std::shared_ptr<Shared> shared_;  // null once finished or moved from
  KeyState* key_ = nullptr;         // owned by shared_, never erased
  std::string key_id_;
  int64_t estimated_tokens_ = 0;
};

class QuotaManager {
 public:
  // `clock` must outlive the manager and its leases.
  explicit QuotaManager(const Clock& clock = SteadyClock());
  ~QuotaManager();
  QuotaManager(const QuotaManager&) = delete;
  QuotaManager& operator=(const QuotaManager&) = delete;

  // Admits a request under `key_id`'s `limits` (the key's current limits:
  // a change takes effect at the key's next request, keeping what its
  // buckets hold). Checks, in this order, with nothing taken on error:
  //   agents, thinking budget, estimate vs tokens_per_minute (INVALID_ARGUMENT);
  //   running requests, then requests and tokens per minute
  //   (RESOURCE_EXHAUSTED with RetryAfterSeconds).
  // On success takes one request and the estimate from the key's buckets
  // and a concurrency slot, held by the returned lease.
  absl::StatusOr<Lease> Admit(absl::string_view key_id, const QuotaLimits& limits,
                              const AdmissionRequest& request);

  // Every key seen so far, by key id.
  std::vector<KeyUsage> UsageSnapshot() const;

 private:
  std::shared_ptr<Lease::Shared> shared_;
};

// Retry-After for RESOURCE_EXHAUSTED: the status payload under this type URL
// holds the seconds as decimal text ("2.5").
inline constexpr absl::string_view kRetryAfterPayloadUrl =
    "type.conclave.dev/conclave.auth.RetryAfterSeconds";

// RESOURCE_EXHAUSTED with `message` and the retry-after payload.
absl::Status RetryLaterError(absl::string_view message, double retry_after_seconds);

// The retry-after payload of `status`, if it has one.
std::optional<double> RetryAfterSeconds(const absl::Status& status);

// The value of an HTTP Retry-After header (whole seconds, RFC 9110): the
// seconds rounded up, at least 1.
int64_t RetryAfterHeaderSeconds(double seconds);

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_QUOTA_H_
