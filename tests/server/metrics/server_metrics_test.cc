// ServerMetrics: what each handler event adds to which series, read back
// from the registry as a scrape would collect it.
#include "server/metrics/server_metrics.h"

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "orchestrator/contemplation.h"
#include "tests/server/metrics/collected.h"

namespace conclave::server {
namespace {

using testing::Collected;

constexpr char kModel[] = "tiny-model";

class ServerMetricsTest : public ::testing::Test {
 protected:
  Collected Collect() const { return Collected(*metrics_.registry()); }

  static RequestRecord Ok(RequestMode mode, engine::FinishReason finish) {
    RequestRecord r;
    r.mode = mode;
    r.code = absl::StatusCode::kOk;
    r.finish = finish;
    r.latency = absl::Seconds(2);
    r.usage = RequestRecord::Usage{12, 5, absl::Milliseconds(250)};
    return r;
  }
  static RequestRecord Rejected(RequestMode mode, absl::StatusCode code) {
    RequestRecord r;
    r.mode = mode;
    r.code = code;
    r.latency = absl::Milliseconds(1);
    return r;
  }

  ServerMetrics metrics_{kModel, BuildInfo{"1.2.3", "abc123", "cpu"}};
};

TEST_F(ServerMetricsTest, EveryCallIsCountedByModeAndStatusCode) {
  metrics_.OnRequestFinished(Ok(RequestMode::kInstant, engine::FinishReason::kLength));
  metrics_.OnRequestFinished(Ok(RequestMode::kInstant, engine::FinishReason::kStopToken));
  metrics_.OnRequestFinished(Rejected(RequestMode::kThinking, absl::StatusCode::kInvalidArgument));
  metrics_.OnRequestFinished(
      Rejected(RequestMode::kContemplating, absl::StatusCode::kResourceExhausted));
  const Collected c = Collect();
  EXPECT_EQ(c.Counter("conclave_requests_total", {{"mode", "instant"}, {"code", "OK"}}), 2);
  EXPECT_EQ(
      c.Counter("conclave_requests_total", {{"mode", "thinking"}, {"code", "INVALID_ARGUMENT"}}),
      1);
  EXPECT_EQ(c.Counter("conclave_requests_total",
                      {{"mode", "contemplating"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
}

TEST_F(ServerMetricsTest, OkCallsAreCountedByFinishReason) {
  metrics_.OnRequestFinished(Ok(RequestMode::kInstant, engine::FinishReason::kLength));
  metrics_.OnRequestFinished(Ok(RequestMode::kThinking, engine::FinishReason::kStopToken));
  RequestRecord answered = Ok(RequestMode::kContemplating, engine::FinishReason::kNone);
  answered.has_answer = true;
  metrics_.OnRequestFinished(answered);
  RequestRecord unanswered = Ok(RequestMode::kContemplating, engine::FinishReason::kNone);
  metrics_.OnRequestFinished(unanswered);
  metrics_.OnRequestFinished(Rejected(RequestMode::kInstant, absl::StatusCode::kCancelled));
  const Collected c = Collect();
  const std::string name = "conclave_request_success_total";
  EXPECT_EQ(c.Counter(name, {{"mode", "instant"}, {"finish_reason", "length"}}), 1);
  EXPECT_EQ(c.Counter(name, {{"mode", "thinking"}, {"finish_reason", "stop"}}), 1);
  EXPECT_EQ(c.Counter(name, {{"mode", "contemplating"}, {"finish_reason", "answer"}}), 1);
  EXPECT_EQ(c.Counter(name, {{"mode", "contemplating"}, {"finish_reason", "no_answer"}}), 1);
  EXPECT_EQ(c.Counter(name, {{"mode", "instant"}, {"finish_reason", "stop"}}), 0);
  // The cancelled call is no success: no series counts it.
  double successes = 0;
  for (const prometheus::ClientMetric& m : c.Family(name)->metric) successes += m.counter.value;
  EXPECT_EQ(successes, 4);
}

TEST_F(ServerMetricsTest, TheCommonOutcomesExistBeforeTheFirstCall) {
  const Collected c = Collect();
  for (const char* mode : {"instant", "thinking", "contemplating"}) {
    EXPECT_EQ(c.Counter("conclave_requests_total", {{"mode", mode}, {"code", "OK"}}), 0);
    EXPECT_EQ(c.Counter("conclave_prompt_tokens_total", {{"mode", mode}}), 0);
    EXPECT_EQ(c.HistogramCount("conclave_e2e_request_latency_seconds", {{"mode", mode}}), 0);
  }
  EXPECT_EQ(c.Counter("conclave_request_success_total",
                      {{"mode", "thinking"}, {"finish_reason", "length"}}),
            0);
  EXPECT_EQ(c.Counter("conclave_request_success_total",
                      {{"mode", "contemplating"}, {"finish_reason", "no_answer"}}),
            0);
}

TEST_F(ServerMetricsTest, TokensAndQueueTimeCountOnlyForCallsThatRan) {
  metrics_.OnRequestFinished(Ok(RequestMode::kInstant, engine::FinishReason::kLength));
  metrics_.OnRequestFinished(Rejected(RequestMode::kInstant, absl::StatusCode::kInvalidArgument));
  const Collected c = Collect();
  EXPECT_EQ(c.Counter("conclave_prompt_tokens_total", {{"mode", "instant"}}), 12);
  EXPECT_EQ(c.Counter("conclave_generation_tokens_total", {{"mode", "instant"}}), 5);
  EXPECT_EQ(c.Counter("conclave_prompt_tokens_total", {{"mode", "thinking"}}), 0);
  const std::string queue = "conclave_request_queue_time_seconds";
  EXPECT_EQ(c.HistogramCount(queue, {{"mode", "instant"}}), 1);
  EXPECT_DOUBLE_EQ(c.HistogramSum(queue, {{"mode", "instant"}}), 0.25);
  EXPECT_EQ(c.BucketCount(queue, {{"mode", "instant"}}, 0.1), 0);
  EXPECT_EQ(c.BucketCount(queue, {{"mode", "instant"}}, 0.25), 1);  // le is inclusive
}

TEST_F(ServerMetricsTest, EndToEndLatencyIsObservedForOkCallsOnly) {
  metrics_.OnRequestFinished(Ok(RequestMode::kThinking, engine::FinishReason::kStopToken));
  metrics_.OnRequestFinished(Rejected(RequestMode::kThinking, absl::StatusCode::kUnavailable));
  const Collected c = Collect();
  const std::string e2e = "conclave_e2e_request_latency_seconds";
  EXPECT_EQ(c.HistogramCount(e2e, {{"mode", "thinking"}}), 1);
  EXPECT_DOUBLE_EQ(c.HistogramSum(e2e, {{"mode", "thinking"}}), 2.0);
  EXPECT_EQ(c.BucketCount(e2e, {{"mode", "thinking"}}, 1), 0);
  EXPECT_EQ(c.BucketCount(e2e, {{"mode", "thinking"}}, 2.5), 1);
}

TEST_F(ServerMetricsTest, TokenArrivalsGiveTimeToFirstTokenAndOneGapPerLaterToken) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  TokenTimer timer(start);
  metrics_.OnTokens(RequestMode::kInstant, timer.OnTokens(1, start + absl::Milliseconds(300)));
  metrics_.OnTokens(RequestMode::kInstant, timer.OnTokens(1, start + absl::Milliseconds(340)));
  metrics_.OnTokens(RequestMode::kInstant, timer.OnTokens(2, start + absl::Milliseconds(380)));
  const Collected c = Collect();
  const std::string ttft = "conclave_time_to_first_token_seconds";
  const std::string itl = "conclave_inter_token_latency_seconds";
  EXPECT_EQ(c.HistogramCount(ttft, {{"mode", "instant"}}), 1);
  EXPECT_NEAR(c.HistogramSum(ttft, {{"mode", "instant"}}), 0.3, 1e-9);
  EXPECT_EQ(c.HistogramCount(itl, {{"mode", "instant"}}), 3);
  EXPECT_NEAR(c.HistogramSum(itl, {{"mode", "instant"}}), 0.04 + 0.02 + 0.02, 1e-9);
  EXPECT_EQ(c.BucketCount(itl, {{"mode", "instant"}}, 0.025), 2);
  EXPECT_EQ(c.HistogramCount(ttft, {{"mode", "thinking"}}), 0);
}

TEST_F(ServerMetricsTest, AContemplationRecordsAgentsStopsSavingsAggregationAndVoteShare) {
  orchestrator::ContemplateResult r;
  r.agents.resize(5);
  r.agents[1].stopped = orchestrator::StopReason::kConsensus;
  r.agents[2].stopped = orchestrator::StopReason::kConsensus;
  r.agents[3].stopped = orchestrator::StopReason::kLowConfidence;
  r.usage.saved_tokens_estimate = 30;
  r.aggregator = orchestrator::AggregatorKind::kVerifier;
  r.aggregation_time = absl::Milliseconds(40);
  r.has_answer = true;
  r.support = 0.75;
  metrics_.OnContemplation(r);
  orchestrator::ContemplateResult unanswered;
  unanswered.agents.resize(2);
  unanswered.aggregator = orchestrator::AggregatorKind::kSynthesis;
  metrics_.OnContemplation(unanswered);

  const Collected c = Collect();
  EXPECT_EQ(c.HistogramCount("conclave_contemplate_agents"), 2);
  EXPECT_EQ(c.HistogramSum("conclave_contemplate_agents"), 7);
  EXPECT_EQ(c.BucketCount("conclave_contemplate_agents", {}, 4), 1);
  const std::string stopped = "conclave_contemplate_agents_stopped_total";
  EXPECT_EQ(c.Counter(stopped, {{"reason", "consensus"}}), 2);
  EXPECT_EQ(c.Counter(stopped, {{"reason", "low_confidence"}}), 1);
  EXPECT_EQ(c.Counter(stopped, {{"reason", "cancelled"}}), 0);
  EXPECT_EQ(c.Counter("conclave_contemplate_saved_tokens_total"), 30);
  const std::string aggregation = "conclave_contemplate_aggregation_seconds";
  EXPECT_EQ(c.HistogramCount(aggregation, {{"aggregator", "verifier"}}), 1);
  EXPECT_NEAR(c.HistogramSum(aggregation, {{"aggregator", "verifier"}}), 0.04, 1e-9);
  EXPECT_EQ(c.HistogramCount(aggregation, {{"aggregator", "synthesis"}}), 1);
  // A run without an answer has no winning share.
  const std::string share = "conclave_contemplate_vote_share";
  EXPECT_EQ(c.HistogramCount(share, {{"aggregator", "verifier"}}), 1);
  EXPECT_EQ(c.BucketCount(share, {{"aggregator", "verifier"}}, 0.7), 0);
  EXPECT_EQ(c.BucketCount(share, {{"aggregator", "verifier"}}, 0.8), 1);
  EXPECT_EQ(c.HistogramCount(share, {{"aggregator", "synthesis"}}), 0);
}

TEST_F(ServerMetricsTest, BuildInfoIsOneWithVersionCommitAndBackend) {
  const Collected c = Collect();
  EXPECT_EQ(c.Gauge("conclave_build_info",
                    {{"version", "1.2.3"}, {"git_commit", "abc123"}, {"backend", "cpu"}}),
            1);
}

TEST_F(ServerMetricsTest, EverySeriesNamesTheModelAndOnlyBoundedLabels) {
  metrics_.OnRequestFinished(Ok(RequestMode::kInstant, engine::FinishReason::kLength));
  metrics_.OnRequestFinished(Rejected(RequestMode::kThinking, absl::StatusCode::kInternal));
  const std::set<std::string> allowed = {"model",         "mode",   "code",
                                         "finish_reason", "reason", "aggregator"};
  const std::set<std::string> build_labels = {"version", "git_commit", "backend"};
  const Collected c = Collect();
  for (const prometheus::MetricFamily& f : c.families()) {
    EXPECT_EQ(f.name.rfind("conclave_", 0), 0u) << f.name;
    for (const prometheus::ClientMetric& m : f.metric) {
      bool has_model = false;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (f.name == "conclave_build_info") {
          EXPECT_TRUE(build_labels.contains(l.name)) << l.name;
          continue;
        }
        EXPECT_TRUE(allowed.contains(l.name)) << f.name << " label " << l.name;
        if (l.name == "model") {
          has_model = true;
          EXPECT_EQ(l.value, kModel);
        }
      }
      if (f.name != "conclave_build_info") {
        EXPECT_TRUE(has_model) << f.name;
      }
    }
  }
}

}  // namespace
}  // namespace conclave::server
