// The JSON report: counts by status code name (gRPC's, or HTTP's for an
// HTTP run), throughput over the run's wall time, latencies of completed
// calls only, per mode.
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

CallResult EndedHttp(Mode mode, grpc::StatusCode code, const char* status, int latency_ms,
                     const char* message = "") {
  CallResult r = Ended(mode, code, latency_ms, code == grpc::StatusCode::OK ? 10 : -1,
                       code == grpc::StatusCode::OK ? 7 : 0);
  r.http_status = status;
  r.message = message;
  return r;
}

TEST(ReportTest, HttpRunsCountByHttpStatusAndRefusalsAre429s) {
  LoadConfig config;
  config.protocol = Protocol::kHttp;
  config.target = "127.0.0.1:8080";
  config.rate = 50;
  config.requests = 5;
  config.max_http_in_flight = 2;
  ReportInputs inputs;
  inputs.mix = *ParseMix("instant=1");
  RunOutcome outcome;
  outcome.issued = 5;
  outcome.wall = absl::Seconds(1);
  outcome.results = {
      EndedHttp(Mode::kInstant, grpc::StatusCode::OK, "200", 100),
      EndedHttp(Mode::kInstant, grpc::StatusCode::RESOURCE_EXHAUSTED, "429", 3,
                "server overloaded: 1 requests queued, retry later"),
      EndedHttp(Mode::kInstant, grpc::StatusCode::UNKNOWN, "stream_error", 50,
                "server_error: the server is shutting down"),
      EndedHttp(Mode::kInstant, grpc::StatusCode::ABORTED, "client_cap", 0,
                "not sent: 2 HTTP calls were in flight (--max-http-in-flight)"),
      EndedHttp(Mode::kInstant, grpc::StatusCode::DEADLINE_EXCEEDED, "timeout", 900,
                "no complete answer within deadline_ms=900"),
  };
  const nlohmann::ordered_json j = BuildReport(config, inputs, outcome);
  EXPECT_EQ(j["config"]["protocol"], "http");
  EXPECT_EQ(j["config"]["max_http_in_flight"], 2);
  EXPECT_FALSE(j["config"].contains("channels"));
  const nlohmann::ordered_json& by_status = j["requests"]["by_status"];
  EXPECT_EQ(by_status.size(), 5u);
  EXPECT_EQ(by_status["200"], 1);
  EXPECT_EQ(by_status["429"], 1);
  EXPECT_EQ(by_status["stream_error"], 1);
  EXPECT_EQ(by_status["client_cap"], 1);
  EXPECT_EQ(by_status["timeout"], 1);
  EXPECT_EQ(j["requests"]["completed"], 1);
  EXPECT_EQ(j["rejected_ms"]["count"], 1);  // the 429 only
  EXPECT_DOUBLE_EQ(j["rejected_ms"]["max"].get<double>(), 3);
  EXPECT_EQ(j["errors"]["stream_error"], "server_error: the server is shutting down");
  EXPECT_EQ(j["errors"]["429"], "server overloaded: 1 requests queued, retry later");
  EXPECT_FALSE(j["errors"].contains("200"));
  EXPECT_EQ(j["generated_tokens"], 7);
}

TEST(ReportTest, GrpcRunsSayTheirProtocolAndChannels) {
  LoadConfig config;
  config.concurrency = 1;
  config.channels = 3;
  const nlohmann::ordered_json j = BuildReport(config, ReportInputs(), RunOutcome());
  EXPECT_EQ(j["config"]["protocol"], "grpc");
  EXPECT_EQ(j["config"]["channels"], 3);
  EXPECT_FALSE(j["config"].contains("max_http_in_flight"));
}

}  // namespace
}  // namespace conclave::loadtest
