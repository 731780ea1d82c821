// The JSON report: counts by status code name, throughput over the run's
// wall time, latencies of completed calls only, per mode.
#include "loadtest/load/report.h"

#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

CallResult Ended(Mode mode, grpc::StatusCode code, int latency_ms, int ttft_ms, int tokens) {
  CallResult r;
  r.mode = mode;
  r.code = code;
  r.latency = absl::Milliseconds(latency_ms);
  if (ttft_ms >= 0) r.first_token = absl::Milliseconds(ttft_ms);
  r.generated_tokens = tokens;
  if (code != grpc::StatusCode::OK) r.message = "server overloaded: 2 requests queued, retry later";
  return r;
}

TEST(ReportTest, NamesEveryGrpcCode) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(99)), "CODE_99");
}

TEST(ReportTest, CountsAndLatenciesOverallAndPerMode) {
  LoadConfig config;
  config.target = "127.0.0.1:1";
  config.rate = 2;
  config.duration = absl::Seconds(10);
  ReportInputs inputs;
  inputs.mix = *ParseMix("instant=1,contemplate=1");
  inputs.prompts_source = "builtin";
  RunOutcome outcome;
  outcome.issued = 5;
  outcome.wall = absl::Seconds(10);
  outcome.issue_window = absl::Seconds(10);
  outcome.results = {
      Ended(Mode::kInstant, grpc::StatusCode::OK, 100, 20, 30),
      Ended(Mode::kInstant, grpc::StatusCode::OK, 300, 40, 50),
      Ended(Mode::kInstant, grpc::StatusCode::RESOURCE_EXHAUSTED, 2, -1, 0),
      Ended(Mode::kContemplate, grpc::StatusCode::OK, 2000, 500, 400),
  };
  outcome.results[3].agent_tokens = 350;
  const nlohmann::ordered_json j = BuildReport(config, inputs, outcome);
  EXPECT_EQ(j["config"]["loop"], "open");
  EXPECT_EQ(j["config"]["api_key"], false);
  EXPECT_EQ(j["requests"]["issued"], 5);
  EXPECT_EQ(j["requests"]["completed"], 3);
  EXPECT_EQ(j["requests"]["by_status"]["OK"], 3);
  EXPECT_EQ(j["requests"]["by_status"]["RESOURCE_EXHAUSTED"], 1);
  EXPECT_EQ(j["requests"]["unfinished"], 1);
  EXPECT_DOUBLE_EQ(j["offered_rate_rps"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["throughput_rps"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), 48);
  EXPECT_DOUBLE_EQ(j["agent_tokens_per_s"].get<double>(), 35);
  EXPECT_EQ(j["e2e_ms"]["count"], 3);
  EXPECT_DOUBLE_EQ(j["e2e_ms"]["max"].get<double>(), 2000);
  EXPECT_DOUBLE_EQ(j["ttft_ms"]["p50"].get<double>(), 40);
  EXPECT_EQ(j["rejected_ms"]["count"], 1);
  EXPECT_EQ(j["errors"]["RESOURCE_EXHAUSTED"], "server overloaded: 2 requests queued, retry later");
  EXPECT_EQ(j["by_mode"]["instant"]["completed"], 2);
  EXPECT_EQ(j["by_mode"]["instant"]["by_status"]["RESOURCE_EXHAUSTED"], 1);
  EXPECT_DOUBLE_EQ(j["by_mode"]["contemplate"]["e2e_ms"]["p99"].get<double>(), 2000);
  EXPECT_FALSE(j["by_mode"].contains("thinking"));
}

}  // namespace
}  // namespace conclave::loadtest
