#include "server/metrics/server_metrics.h"

#include <vector>

#include "orchestrator/contemplation.h"

namespace conclave::server {
namespace {

using prometheus::Histogram;

// Buckets, in seconds unless named otherwise. One set serves a CPU server
// (a 135M model: time to first token ~50 ms to seconds, tokens every
// 10-100 ms; larger models on CPU: tens of seconds) and a GPU server (first
// token in 5-50 ms, tokens every few ms), as vLLM's do for both.
// docs/metrics.md lists them.
const Histogram::BucketBoundaries& TimeToFirstTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80};
  return *b;
}
const Histogram::BucketBoundaries& InterTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5};
  return *b;
}
// Whole calls: an instant answer on a GPU takes well under a second; a
// Contemplate run of many agents on a CPU can take minutes.
const Histogram::BucketBoundaries& RequestLatencyBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
  return *b;
}
const Histogram::BucketBoundaries& QueueTimeBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return *b;
}
// A vote takes microseconds; the verifier and synthesis passes take as long
// as a short generation.
const Histogram::BucketBoundaries& AggregationBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *b;
}
// Agents per Contemplate call (--max-agents is at most 32 by default).
const Histogram::BucketBoundaries& AgentBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64};
  return *b;
}
// The winner's share of the vote, [0, 1].
const Histogram::BucketBoundaries& VoteShareBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
                                                         0.7, 0.8, 0.9, 1.0};
  return *b;
}

constexpr RequestMode kModes[] = {RequestMode::kInstant, RequestMode::kThinking,
                                  RequestMode::kContemplating};
constexpr orchestrator::StopReason kStopReasons[] = {orchestrator::StopReason::kConsensus,
                                                     orchestrator::StopReason::kLowConfidence,
                                                     orchestrator::StopReason::kCancelled};
constexpr orchestrator::AggregatorKind kAggregators[] = {
    orchestrator::AggregatorKind::kMajority, orchestrator::AggregatorKind::kConfidence,
    orchestrator::AggregatorKind::kVerifier, orchestrator::AggregatorKind::kSynthesis};

// The finish_reason values of OK calls of `mode` (see FinishLabel).
std::vector<const char*> SuccessLabels(RequestMode mode) {
  if (mode == RequestMode::kContemplating) return {"answer", "no_answer"};
  return {engine::FinishReasonName(engine::FinishReason::kStopToken),
          engine::FinishReasonName(engine::FinishReason::kStopString),
          engine::FinishReasonName(engine::FinishReason::kLength)};
}

constexpr AuthRejection kAuthRejections[] = {
    AuthRejection::kMissingKey,       AuthRejection::kInvalidKey,  AuthRejection::kRevoked,
    AuthRejection::kRequestOverLimit, AuthRejection::kConcurrency, AuthRejection::kRateLimited};

const char* FinishLabel(const RequestRecord& r) {
  if (r.mode == RequestMode::kContemplating) return r.has_answer ? "answer" : "no_answer";
  return engine::FinishReasonName(r.finish);
}

}  // namespace

const char* RequestModeName(RequestMode mode) {
  switch (mode) {
    case RequestMode::kInstant: return "instant";
    case RequestMode::kThinking: return "thinking";
    case RequestMode::kContemplating: return "contemplating";
  }
  return "unknown";
}

const char* AuthRejectionName(AuthRejection reason) {
  switch (reason) {
    case AuthRejection::kMissingKey: return "missing_key";
    case AuthRejection::kInvalidKey: return "invalid_key";
    case AuthRejection::kRevoked: return "revoked";
    case AuthRejection::kRequestOverLimit: return "request_over_limit";
    case AuthRejection::kConcurrency: return "concurrency";
    case AuthRejection::kRateLimited: return "rate_limited";
  }
  return "unknown";
}

ServerMetrics::ServerMetrics(const std::string& model, const BuildInfo& build)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("conclave_requests_total")
                    .Help("API calls (Generate, Contemplate) by mode and gRPC status code, "
                          "counted when they end; rejected calls included")
                    .Labels({{"model", model}})
                    .Register(*registry_)),
      request_success_(prometheus::BuildCounter()
                           .Name("conclave_request_success_total")
                           .Help("API calls that ended OK, by mode and finish reason")
                           .Labels({{"model", model}})
                           .Register(*registry_)),
      agents_stopped_(prometheus::BuildCounter()
                          .Name("conclave_contemplate_agents_stopped_total")
                          .Help("Contemplate agents stopped before they finished, by reason")
                          .Labels({{"model", model}})
                          .Register(*registry_)),
      aggregation_time_(prometheus::BuildHistogram()
                            .Name("conclave_contemplate_aggregation_seconds")
                            .Help("Time a Contemplate run spent aggregating after its last "
                                  "agent ended, by aggregator")
                            .Labels({{"model", model}})
                            .Register(*registry_)),
      vote_share_(prometheus::BuildHistogram()
                      .Name("conclave_contemplate_vote_share")
                      .Help("The winning answer's share of the vote in Contemplate runs that "
                            "found an answer, by aggregator")
                      .Labels({{"model", model}})
                      .Register(*registry_)),
      agents_(prometheus::BuildHistogram()
                  .Name("conclave_contemplate_agents")
                  .Help("Agents per Contemplate run")
                  .Labels({{"model", model}})
                  .Register(*registry_)
                  .Add({}, AgentBuckets())),
      saved_tokens_(prometheus::BuildCounter()
                        .Name("conclave_contemplate_saved_tokens_total")
                        .Help("Tokens early stopping saved: for every stopped agent, the "
                              "finished agents' mean length minus what it had generated")
                        .Labels({{"model", model}})
                        .Register(*registry_)
                        .Add({})),
      key_requests_(prometheus::BuildCounter()
                        .Name("conclave_key_requests_total")
                        .Help("Generate and Contemplate calls under an API key, by key id and "
                              "gRPC status code, counted when they end (quota rejections "
                              "included)")
                        .Labels({{"model", model}})
                        .Register(*registry_)),
      key_prompt_tokens_(prometheus::BuildCounter()
                             .Name("conclave_key_prompt_tokens_total")
                             .Help("Prompt tokens of calls under an API key, by key id (every "
                                   "engine request of a call, cached tokens included)")
                             .Labels({{"model", model}})
                             .Register(*registry_)),
      key_generation_tokens_(prometheus::BuildCounter()
                                 .Name("conclave_key_generation_tokens_total")
                                 .Help("Tokens generated for calls under an API key, by key id "
                                       "(agents, thinking and aggregator passes included)")
                                 .Labels({{"model", model}})
                                 .Register(*registry_)),
      key_agent_tokens_(prometheus::BuildCounter()
                            .Name("conclave_key_agent_tokens_total")
                            .Help("Of the generated tokens under an API key, those of the "
                                  "agents (Generate: all of them; Contemplate: not the "
                                  "aggregator's), by key id")
                            .Labels({{"model", model}})
                            .Register(*registry_)),
      auth_rejections_(prometheus::BuildCounter()
                           .Name("conclave_auth_rejections_total")
                           .Help("Calls turned away by the API-key checks, by reason")
                           .Labels({{"model", model}})
                           .Register(*registry_)),
      key_store_reloads_(prometheus::BuildCounter()
                             .Name("conclave_key_store_reloads_total")
                             .Help("Times the server reloaded its API key store after the file "
                                   "changed")
                             .Labels({{"model", model}})
                             .Register(*registry_)
                             .Add({})) {
  for (AuthRejection reason : kAuthRejections) {
    auth_rejections_.Add({{"reason", AuthRejectionName(reason)}});
  }
  prometheus::BuildGauge()
      .Name("conclave_build_info")
      .Help("Always 1; the labels say which build serves")
      .Register(*registry_)
      .Add({{"version", build.version},
            {"git_commit", build.git_commit},
            {"backend", build.backend}})
      .Set(1);

  auto& ttft = prometheus::BuildHistogram()
                   .Name("conclave_time_to_first_token_seconds")
                   .Help("Generate calls: call start to the first generated token")
                   .Labels({{"model", model}})
                   .Register(*registry_);
  auto& itl = prometheus::BuildHistogram()
                  .Name("conclave_inter_token_latency_seconds")
                  .Help("Generate calls: time between consecutive generated tokens")
                  .Labels({{"model", model}})
                  .Register(*registry_);
  auto& e2e = prometheus::BuildHistogram()
                  .Name("conclave_e2e_request_latency_seconds")
                  .Help("Calls that ended OK: call start to the final message")
                  .Labels({{"model", model}})
                  .Register(*registry_);
  auto& queue = prometheus::BuildHistogram()
                    .Name("conclave_request_queue_time_seconds")
                    .Help("Time a call's engine requests waited in the engine's queue before "
                          "their first step")
                    .Labels({{"model", model}})
                    .Register(*registry_);
  auto& prompt = prometheus::BuildCounter()
                     .Name("conclave_prompt_tokens_total")
                     .Help("Prompt tokens of calls that ran (every engine request of a call)")
                     .Labels({{"model", model}})
                     .Register(*registry_);
  auto& generation = prometheus::BuildCounter()
                         .Name("conclave_generation_tokens_total")
                         .Help("Tokens generated for calls that ran (agents, thinking and "
                               "aggregator passes included)")
                         .Labels({{"model", model}})
                         .Register(*registry_);
  for (RequestMode mode : kModes) {
    const prometheus::Labels labels{{"mode", RequestModeName(mode)}};
    // The common outcomes exist from the start, so that rate() and ratios
    // over them are defined before the first call.
    requests_.Add({{"mode", RequestModeName(mode)}, {"code", "OK"}});
    for (const char* finish : SuccessLabels(mode)) {
      request_success_.Add({{"mode", RequestModeName(mode)}, {"finish_reason", finish}});
    }
    ModeSeries& s = series(mode);
    s.time_to_first_token = &ttft.Add(labels, TimeToFirstTokenBuckets());
    s.inter_token_latency = &itl.Add(labels, InterTokenBuckets());
    s.e2e_latency = &e2e.Add(labels, RequestLatencyBuckets());
    s.queue_time = &queue.Add(labels, QueueTimeBuckets());
    s.prompt_tokens = &prompt.Add(labels);
    s.generation_tokens = &generation.Add(labels);
  }
  for (orchestrator::StopReason reason : kStopReasons) {
    agents_stopped_.Add({{"reason", orchestrator::StopReasonName(reason)}});
  }
  for (orchestrator::AggregatorKind kind : kAggregators) {
    const prometheus::Labels labels{{"aggregator", orchestrator::AggregatorName(kind)}};
    aggregation_time_.Add(labels, AggregationBuckets());
    vote_share_.Add(labels, VoteShareBuckets());
  }
}

void ServerMetrics::OnTokens(RequestMode mode, const TokenTimer::Arrival& arrival) {
  ModeSeries& s = series(mode);
  if (arrival.time_to_first_token.has_value()) {
    s.time_to_first_token->Observe(absl::ToDoubleSeconds(*arrival.time_to_first_token));
  }
  const double gap = absl::ToDoubleSeconds(arrival.gap);
  for (int i = 0; i < arrival.gaps; ++i) s.inter_token_latency->Observe(gap);
}

void ServerMetrics::OnRequestFinished(const RequestRecord& r) {
  const char* mode = RequestModeName(r.mode);
  requests_.Add({{"mode", mode}, {"code", absl::StatusCodeToString(r.code)}}).Increment();
  ModeSeries& s = series(r.mode);
  if (r.usage.has_value()) {
    s.prompt_tokens->Increment(r.usage->prompt_tokens);
    s.generation_tokens->Increment(r.usage->generated_tokens);
    s.queue_time->Observe(absl::ToDoubleSeconds(r.usage->queue_time));
  }
  if (r.code != absl::StatusCode::kOk) return;
  request_success_.Add({{"mode", mode}, {"finish_reason", FinishLabel(r)}}).Increment();
  s.e2e_latency->Observe(absl::ToDoubleSeconds(r.latency));
}

void ServerMetrics::OnContemplation(const orchestrator::ContemplateResult& result) {
  agents_.Observe(static_cast<double>(result.agents.size()));
  for (const orchestrator::AgentOutcome& a : result.agents) {
    if (!a.stopped.has_value()) continue;
    agents_stopped_.Add({{"reason", orchestrator::StopReasonName(*a.stopped)}}).Increment();
  }
  saved_tokens_.Increment(result.usage.saved_tokens_estimate);
  const prometheus::Labels labels{{"aggregator", orchestrator::AggregatorName(result.aggregator)}};
  aggregation_time_.Add(labels, AggregationBuckets())
      .Observe(absl::ToDoubleSeconds(result.aggregation_time));
  if (result.has_answer) vote_share_.Add(labels, VoteShareBuckets()).Observe(result.support);
}

void ServerMetrics::OnKeysLoaded(const std::vector<std::string>& key_ids) {
  for (const std::string& id : key_ids) {
    const prometheus::Labels labels{{"key_id", id}};
    key_requests_.Add({{"key_id", id}, {"code", "OK"}});
    key_prompt_tokens_.Add(labels);
    key_generation_tokens_.Add(labels);
    key_agent_tokens_.Add(labels);
  }
}

void ServerMetrics::OnKeyStoreReloads(int64_t count) {
  key_store_reloads_.Increment(static_cast<double>(count));
}

void ServerMetrics::OnAuthRejected(AuthRejection reason) {
  auth_rejections_.Add({{"reason", AuthRejectionName(reason)}}).Increment();
}

void ServerMetrics::OnKeyRequestFinished(const std::string& key_id, absl::StatusCode code,
                                         const auth::TokenUsage& usage) {
  const prometheus::Labels labels{{"key_id", key_id}};
  key_requests_.Add({{"key_id", key_id}, {"code", absl::StatusCodeToString(code)}}).Increment();
  key_prompt_tokens_.Add(labels).Increment(static_cast<double>(usage.prompt_tokens));
  key_generation_tokens_.Add(labels).Increment(static_cast<double>(usage.generated_tokens));
  key_agent_tokens_.Add(labels).Increment(static_cast<double>(usage.agent_tokens));
}

}  // namespace conclave::server
