// conclave-load: a load generator for conclave-server on this machine, over
// its gRPC API or its OpenAI-compatible HTTP endpoint (docs/http.md).
//
//   conclave-load --target 127.0.0.1:50051 (--rate R | --concurrency C)
//       (--duration SECONDS | --requests N) [--mix instant=0.5,thinking=0.2,contemplate=0.3]
//       [--protocol grpc|http] [--agents 8] [--max-tokens 64] [--thinking-budget N]
//       [--prompts FILE.jsonl] [--api-key KEY] [--drain-timeout 30] [--deadline-ms MS]
//       [--channels 1] [--max-http-in-flight 1024] [--seed 1]
//       [--stream-agent-text=true] [--honor-retry-after=true]
//
// Open loop (--rate): Poisson arrivals at R requests per second, sent
// whatever the server does. Closed loop (--concurrency): C clients, each
// sending its next request when its last one ends (after the server's
// retry-after when it was refused, unless --honor-retry-after=false). It stops sending at
// --duration or after --requests, whichever comes first (at least one is required), waits up to
// --drain-timeout for the calls in flight, cancels the rest, and prints one JSON object on stdout
// (loadtest/load/report.h describes every field). The API key comes from --api-key or
// $CONCLAVE_API_KEY and is sent as "authorization: Bearer".
//
// --protocol http: --target is the server's HTTP port; instant requests are
// streamed chat completions, contemplate requests streamed
// /v1/contemplations (loadtest/load/http_requests.h); thinking has no HTTP
// route, so a --mix with thinking is refused. Each call in flight is one
// thread and one connection: at most --max-http-in-flight at once (an open
// loop's call due beyond it is not sent and counted as "client_cap"; a
// closed loop's --concurrency may not exceed it). --channels is gRPC's.
//
// --target must be this machine (localhost, 127.0.0.0/8, [::1]). Bad flags
// or another target: a message on stderr and exit status 2. No server at the
// target: exit status 1. Otherwise 0, whatever the calls ended with.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/tools/dash_flags.h"
#include "loadtest/load/http_requests.h"
#include "loadtest/load/load_runner.h"
#include "loadtest/load/report.h"
#include "loadtest/load/target.h"
#include "loadtest/load/workload.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "the server's gRPC HOST:PORT, or its HTTP one with --protocol http (loopback only)");
ABSL_FLAG(std::string, protocol, "grpc",
          "grpc (the gRPC API) or http (the OpenAI-compatible endpoint: instant and contemplate)");
ABSL_FLAG(double, rate, 0, "open loop: Poisson arrivals at this many requests per second");
ABSL_FLAG(int, concurrency, 0, "closed loop: this many requests always in flight");
ABSL_FLAG(std::string, mix, "instant=1",
          "weights of the modes, e.g. instant=0.5,thinking=0.2,contemplate=0.3");
ABSL_FLAG(int, agents, 8, "agents of each Contemplate request");
ABSL_FLAG(int, max_tokens, 64, "max_tokens of each request (per agent for Contemplate)");
ABSL_FLAG(int, thinking_budget, 0,
          "thinking_budget of thinking and contemplate requests (0: the server's default)");
ABSL_FLAG(std::string, prompts, "",
          "JSONL file of {\"question\": ...} objects (default: a small built-in set)");
ABSL_FLAG(std::string, api_key, "", "API key sent as a bearer token (default $CONCLAVE_API_KEY)");
ABSL_FLAG(double, duration, 0, "stop sending after this many seconds (0: no time bound)");
ABSL_FLAG(int64_t, requests, 0, "stop sending after this many requests (0: no count bound)");
ABSL_FLAG(double, drain_timeout, 30, "seconds to wait for calls in flight after sending stops");
ABSL_FLAG(int64_t, deadline_ms, 0, "deadline of each call in milliseconds (0: none)");
ABSL_FLAG(int, channels, 1, "gRPC channels (connections) the calls are spread over");
ABSL_FLAG(int, max_http_in_flight, 1024,
          "--protocol http: most calls in flight, one thread each; an open loop's call due "
          "beyond it is not sent (by_status \"client_cap\")");
ABSL_FLAG(uint64_t, seed, 1, "seed of the arrivals, the mix and the requests' sampling");
ABSL_FLAG(bool, honor_retry_after, true,
          "closed loop: a client refused with RESOURCE_EXHAUSTED waits the server's retry-after "
          "(1 s without one) before its next request; false: it sends again at once");
ABSL_FLAG(bool, stream_agent_text, true,
          "Contemplate requests stream agent text (time to first token is the first agent "
          "text); false: it is the final answer");

namespace {

// One thread per HTTP call: far beyond what one loopback server serves
// (its --http-threads are at most 256), short of a process's thread limit.
constexpr int kMaxHttpInFlight = 16384;

int UsageError(const std::string& message) {
  std::cerr << "conclave-load: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "conclave-load [--protocol grpc|http] --target HOST:PORT (--rate R | --concurrency C) "
      "(--duration S | --requests N) [options]");
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) return UsageError(absl::StrCat("unexpected argument ", positional[1]));

  using namespace conclave::loadtest;
  LoadConfig config;
  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  if (protocol == "http") {
    config.protocol = Protocol::kHttp;
  } else if (protocol != "grpc") {
    return UsageError(absl::StrCat("--protocol=", protocol, " must be grpc or http"));
  }
  const bool http = config.protocol == Protocol::kHttp;
  config.target = absl::GetFlag(FLAGS_target);
  if (absl::Status s = CheckLoopbackTarget(config.target); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  config.rate = absl::GetFlag(FLAGS_rate);
  config.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (!(config.rate >= 0) || config.concurrency < 0 ||
      (config.rate > 0) == (config.concurrency > 0)) {
    return UsageError(
        "give exactly one of --rate R > 0 (open loop) and --concurrency C > 0 "
        "(closed loop)");
  }
  const double duration = absl::GetFlag(FLAGS_duration);
  config.requests = absl::GetFlag(FLAGS_requests);
  if (!(duration >= 0) || config.requests < 0 || (duration == 0 && config.requests == 0)) {
    return UsageError("give --duration SECONDS > 0 and/or --requests N > 0: a run is bounded");
  }
  if (duration > 0) config.duration = absl::Seconds(duration);
  const double drain = absl::GetFlag(FLAGS_drain_timeout);
  if (!(drain >= 0)) return UsageError("--drain-timeout must be >= 0");
  config.drain_timeout = absl::Seconds(drain);
  const int64_t deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  if (deadline_ms < 0) return UsageError("--deadline-ms must be >= 0");
  if (deadline_ms > 0) config.deadline = absl::Milliseconds(deadline_ms);
  config.channels = absl::GetFlag(FLAGS_channels);
  if (config.channels < 1 || config.channels > 64) {
    return UsageError("--channels must be in [1, 64]");
  }
  if (http && config.channels != 1) {
    return UsageError("--channels is gRPC's: each HTTP call has a connection of its own");
  }
  config.max_http_in_flight = absl::GetFlag(FLAGS_max_http_in_flight);
  if (config.max_http_in_flight < 1 || config.max_http_in_flight > kMaxHttpInFlight) {
    return UsageError(absl::StrCat("--max-http-in-flight must be in [1, ", kMaxHttpInFlight, "]"));
  }
  if (http && config.concurrency > config.max_http_in_flight) {
    return UsageError(absl::StrCat("--concurrency ", config.concurrency,
                                   " exceeds --max-http-in-flight ", config.max_http_in_flight,
                                   " (one thread per HTTP call)"));
  }
  config.seed = absl::GetFlag(FLAGS_seed);
  config.honor_retry_after = absl::GetFlag(FLAGS_honor_retry_after);
  config.shape.agents = absl::GetFlag(FLAGS_agents);
  config.shape.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  config.shape.thinking_budget = absl::GetFlag(FLAGS_thinking_budget);
  config.shape.stream_agent_text = absl::GetFlag(FLAGS_stream_agent_text);
  if (config.shape.agents < 1) return UsageError("--agents must be >= 1");
  if (config.shape.max_tokens < 1) return UsageError("--max-tokens must be >= 1");
  if (config.shape.thinking_budget < 0 ||
      (config.shape.thinking_budget > 0 &&
       config.shape.thinking_budget >= config.shape.max_tokens)) {
    return UsageError("--thinking-budget must be in [1, --max-tokens - 1], or 0");
  }
  config.api_key = absl::GetFlag(FLAGS_api_key);
  if (config.api_key.empty()) {
    if (const char* env = std::getenv("CONCLAVE_API_KEY"); env != nullptr) config.api_key = env;
  }

  absl::StatusOr<Mix> mix = ParseMix(absl::GetFlag(FLAGS_mix));
  if (!mix.ok()) return UsageError(std::string(mix.status().message()));
  for (Mode m : kModes) {
    if (http && mix->of(m) > 0 && !HasHttpRoute(m)) {
      return UsageError(absl::StrCat(
          "--mix ", ModeName(m), "=", mix->of(m), ": ", ModeName(m),
          " mode has no HTTP route (the OpenAI-compatible endpoint serves instant chat "
          "completions and contemplations, docs/http.md); use --protocol grpc or leave ",
          ModeName(m), " out of --mix"));
    }
  }
  ReportInputs inputs;
  inputs.mix = *mix;
  std::vector<std::string> prompts;
  const std::string prompts_path = absl::GetFlag(FLAGS_prompts);
  if (prompts_path.empty()) {
    prompts = BuiltinPrompts();
    inputs.prompts_source = "builtin";
  } else {
    absl::StatusOr<std::vector<std::string>> loaded = LoadPrompts(prompts_path);
    if (!loaded.ok()) return UsageError(std::string(loaded.status().message()));
    prompts = *std::move(loaded);
    inputs.prompts_source = prompts_path;
  }
  inputs.num_prompts = static_cast<int>(prompts.size());

  // The arrivals draw from the seed and the workload from seed + 1, so that
  // changing the mix leaves the arrival times as they were.
  Workload workload(*mix, std::move(prompts), config.seed + 1);
  absl::StatusOr<RunOutcome> outcome = RunLoad(config, workload);
  if (!outcome.ok()) {
    std::cerr << "conclave-load: " << outcome.status().message() << "\n";
    return 1;
  }
  std::cout << BuildReport(config, inputs, *outcome).dump(2) << std::endl;
  return 0;
}
