// The server's own Prometheus metrics: what the RPC handlers observe about
// each call (outcome, tokens, latencies) and about each Contemplate run,
// plus conclave_build_info. The engine's state (queues, KV blocks, prefix
// cache, preemptions) is read at scrape time by EngineCollector instead.
//
// Every series carries model=<served model id>. The other labels take
// values from fixed sets only: mode (instant|thinking|contemplating), code
// (a gRPC status code name), finish_reason, reason and aggregator (enum
// names). No label or value ever holds request content. docs/metrics.md
// lists every metric with its meaning and buckets.
// Thread-safe: handlers call it from any thread.
#ifndef CONCLAVE_SERVER_METRICS_SERVER_METRICS_H_
#define CONCLAVE_SERVER_METRICS_SERVER_METRICS_H_

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/request.h"
#include "orchestrator/contemplation.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/auth/quota.h"
#include "server/metrics/build_info.h"
#include "server/metrics/token_timer.h"

namespace conclave::server {

enum class RequestMode { kInstant, kThinking, kContemplating };
const char* RequestModeName(RequestMode mode);  // "instant", "thinking", "contemplating"

// Why a call was turned away by API-key checks (the `reason` label of
// conclave_auth_rejections_total).
enum class AuthRejection {
  kMissingKey,        // no authorization entry, or an empty one
  kInvalidKey,        // malformed, unknown id or wrong secret
  kRevoked,           // a revoked key with its right secret
  kRequestOverLimit,  // agents, thinking budget or estimate above the key's limit
  kConcurrency,       // max_concurrent_requests reached
  kRateLimited,       // requests_per_minute or tokens_per_minute
};
// "missing_key", "invalid_key", "revoked", "request_over_limit",
// "concurrency", "rate_limited".
const char* AuthRejectionName(AuthRejection reason);

// How one API call ended.
struct RequestRecord {
  // What a call that ran to an outcome in the engine used.
  struct Usage {
    int prompt_tokens = 0;
    int generated_tokens = 0;
    absl::Duration queue_time = absl::ZeroDuration();  // in the engine's queue
  };

  RequestMode mode = RequestMode::kInstant;       // the mode asked for
  absl::StatusCode code = absl::StatusCode::kOk;  // what the client got
  absl::Duration latency = absl::ZeroDuration();  // call start -> end
  // Set when the call ran to an outcome (every OK call; also a Generate
  // cancelled while it ran): its tokens are counted, its queue time observed.
  std::optional<Usage> usage;
  // Why an OK call ended: `finish` for instant and thinking, `has_answer`
  // (an answer was extracted or synthesized) for contemplating.
  engine::FinishReason finish = engine::FinishReason::kNone;
  bool has_answer = false;
};

class ServerMetrics {
 public:
  // `model`: the served model's id, a constant label of every series.
  ServerMetrics(const std::string& model, const BuildInfo& build);
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Everything this class records, for the exposer and for tests.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Tokens of a Generate call reached the server (see TokenTimer).
  void OnTokens(RequestMode mode, const TokenTimer::Arrival& arrival);
  // A call ended: once per call, rejected ones included.
  void OnRequestFinished(const RequestRecord& record);
  // A Contemplate run returned a result.
  void OnContemplation(const orchestrator::ContemplateResult& result);

  // API keys (labelled by key id, which is public; never a secret). The
  // keys of a (re)loaded store get their series at 0, so that they exist
  // before the key's first call.
  void OnKeysLoaded(const std::vector<std::string>& key_ids);
  // The key store watcher reloaded the file `count` more times.
  void OnKeyStoreReloads(int64_t count);
  // A call was turned away by the API-key checks.
  void OnAuthRejected(AuthRejection reason);
  // A call under `key_id` ended with `code`, having used `usage`.
  void OnKeyRequestFinished(const std::string& key_id, absl::StatusCode code,
                            const auth::TokenUsage& usage);

 private:
  // The series of one mode, created up front so that they exist (at 0)
  // before the first call.
  struct ModeSeries {
    prometheus::Histogram* time_to_first_token = nullptr;
    prometheus::Histogram* inter_token_latency = nullptr;
    prometheus::Histogram* e2e_latency = nullptr;
    prometheus::Histogram* queue_time = nullptr;
    prometheus::Counter* prompt_tokens = nullptr;
    prometheus::Counter* generation_tokens = nullptr;
  };
  ModeSeries& series(RequestMode mode) { return modes_[static_cast<int>(mode)]; }

  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& request_success_;
  prometheus::Family<prometheus::Counter>& agents_stopped_;
  prometheus::Family<prometheus::Histogram>& aggregation_time_;
  prometheus::Family<prometheus::Histogram>& vote_share_;
  prometheus::Histogram& agents_;
  prometheus::Counter& saved_tokens_;
  prometheus::Family<prometheus::Counter>& key_requests_;
  prometheus::Family<prometheus::Counter>& key_prompt_tokens_;
  prometheus::Family<prometheus::Counter>& key_generation_tokens_;
  prometheus::Family<prometheus::Counter>& key_agent_tokens_;
  prometheus::Family<prometheus::Counter>& auth_rejections_;
  prometheus::Counter& key_store_reloads_;
  std::array<ModeSeries, 3> modes_;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_METRICS_SERVER_METRICS_H_
