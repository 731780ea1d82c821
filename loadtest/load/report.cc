#include "loadtest/load/report.h"

#include <cmath>
#include <functional>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "loadtest/load/latency_stats.h"

namespace conclave::loadtest {
namespace {

using json = nlohmann::ordered_json;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Rounds to 3 decimals, so that the report reads well.
double Round3(double v) { return std::round(v * 1000) / 1000; }

json SummaryJson(std::vector<double> samples) {
  const LatencySummary s = Summarize(std::move(samples));
  return json{{"count", s.count},     {"mean", Round3(s.mean)}, {"p50", Round3(s.p50)},
              {"p95", Round3(s.p95)}, {"p99", Round3(s.p99)},   {"max", Round3(s.max)}};
}

// What the calls accepted by `keep` did, over `wall`.
json Section(const std::vector<CallResult>& results, absl::Duration wall,
             const std::function<bool(const CallResult&)>& keep) {
  int64_t issued = 0, completed = 0, generated = 0, agent = 0;
  std::map<std::string, int64_t> by_status;
  std::vector<double> ttft, e2e, rejected;
  for (const CallResult& r : results) {
    if (!keep(r)) continue;
    ++issued;
    ++by_status[StatusName(r)];
    if (r.code == grpc::StatusCode::RESOURCE_EXHAUSTED) rejected.push_back(Ms(r.latency));
    if (r.code != grpc::StatusCode::OK) continue;
    ++completed;
    generated += r.generated_tokens;
    agent += r.agent_tokens;
    e2e.push_back(Ms(r.latency));
    if (r.first_token != absl::InfiniteDuration()) ttft.push_back(Ms(r.first_token));
  }
  const double seconds = absl::ToDoubleSeconds(wall);
  auto per_second = [&](double v) { return seconds > 0 ? Round3(v / seconds) : 0.0; };
  return json{{"ended", issued},
              {"completed", completed},
              {"by_status", by_status},
              {"throughput_rps", per_second(static_cast<double>(completed))},
              {"tokens_per_s", per_second(static_cast<double>(generated))},
              {"agent_tokens_per_s", per_second(static_cast<double>(agent))},
              {"generated_tokens", generated},
              {"agent_tokens", agent},
              {"ttft_ms", SummaryJson(std::move(ttft))},
              {"e2e_ms", SummaryJson(std::move(e2e))},
              {"rejected_ms", SummaryJson(std::move(rejected))}};
}

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  if (i >= 0 && i < static_cast<int>(std::size(kNames))) return kNames[i];
  return absl::StrCat("CODE_", i);
}

std::string StatusName(const CallResult& result) {
  return result.http_status.empty() ? StatusCodeName(result.code) : result.http_status;
}

json BuildReport(const LoadConfig& config, const ReportInputs& inputs, const RunOutcome& outcome) {
  const bool open = config.rate > 0;
  const bool http = config.protocol == Protocol::kHttp;
  json cfg = {
      {"protocol", ProtocolName(config.protocol)},
      {"target", config.target},
      {"loop", open ? "open" : "closed"},
      {"mix", MixToString(inputs.mix)},
      {"agents", config.shape.agents},
      {"max_tokens", config.shape.max_tokens},
      {"thinking_budget", config.shape.thinking_budget},
      {"stream_agent_text", config.shape.stream_agent_text},
      {"prompts", inputs.prompts_source},
      {"num_prompts", inputs.num_prompts},
      {"duration_s", config.duration == absl::InfiniteDuration()
                         ? json(nullptr)
                         : json(absl::ToDoubleSeconds(config.duration))},
      {"requests", config.requests > 0 ? json(config.requests) : json(nullptr)},
      {"drain_timeout_s", absl::ToDoubleSeconds(config.drain_timeout)},
      {"deadline_ms",
       config.deadline == absl::InfiniteDuration() ? json(nullptr) : json(Ms(config.deadline))},
      {"channels", config.channels},
      {"seed", config.seed},
      {"api_key", !config.api_key.empty()},  // whether one was sent; never the key
  };
  if (http) {
    cfg.erase("channels");  // each HTTP call has a connection of its own
    cfg["max_http_in_flight"] = config.max_http_in_flight;
  }
  if (open) {
    cfg["rate"] = config.rate;
  } else {
    cfg["concurrency"] = config.concurrency;
    cfg["honor_retry_after"] = config.honor_retry_after;
  }

  json report = Section(outcome.results, outcome.wall, [](const CallResult&) { return true; });
  int64_t drained = 0;
  std::map<std::string, std::string> errors;
  for (const CallResult& r : outcome.results) {
    drained += r.cancelled_at_drain;
    if (r.code != grpc::StatusCode::OK) errors.emplace(StatusName(r), r.message);
  }
  json requests = {{"issued", outcome.issued},
                   {"completed", report["completed"]},
                   {"by_status", report["by_status"]},
                   {"cancelled_at_drain", drained},
                   {"unfinished", outcome.issued - static_cast<int64_t>(outcome.results.size())}};
  report.erase("ended");
  report.erase("completed");
  report.erase("by_status");

  json out = {{"config", cfg},
              {"duration_s", Round3(absl::ToDoubleSeconds(outcome.wall))},
              {"issue_window_s", Round3(absl::ToDoubleSeconds(outcome.issue_window))},
              {"requests", requests}};
  if (open) {
    const double window = absl::ToDoubleSeconds(outcome.issue_window);
    out["offered_rate_rps"] =
        window > 0 ? Round3(static_cast<double>(outcome.issued) / window) : 0.0;
    out["max_dispatch_lag_ms"] = Round3(Ms(outcome.max_dispatch_lag));
  }
  for (auto& [key, value] : report.items()) out[key] = value;
  json by_mode = json::object();
  for (Mode m : kModes) {
    if (inputs.mix.of(m) <= 0) continue;
    by_mode[ModeName(m)] =
        Section(outcome.results, outcome.wall, [m](const CallResult& r) { return r.mode == m; });
  }
  out["by_mode"] = by_mode;
  out["errors"] = errors;
  return out;
}

}  // namespace conclave::loadtest
