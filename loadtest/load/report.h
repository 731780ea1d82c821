// The load generator's one JSON object: the configuration it ran, then what
// happened, overall and per mode.
//
//   config        the flags it ran with; "protocol" is "grpc" or "http"
//                 (http: "max_http_in_flight" where gRPC has "channels")
//   requests      issued; completed (ended OK); by_status; cancelled_at_drain;
//                 unfinished (never ended, even after being cancelled:
//                 should be 0)
//   by_status     gRPC runs: gRPC code names ("OK", "RESOURCE_EXHAUSTED",
//                 ...). HTTP runs: what an operator of the HTTP endpoint
//                 reads in its access logs, the HTTP status ("200" for a
//                 stream that ended with [DONE] and no error event, "429",
//                 "401", ...), and for ends without one "stream_error" (an
//                 error event after the 200, or a stream cut short),
//                 "timeout" (--deadline-ms), "cancelled" (the drain),
//                 "connection_error" and "client_cap" (not sent: the
//                 --max-http-in-flight threads were busy); http_outcome.h
//   duration_s    the run's start -> the last call's end (drain included)
//   throughput_rps      completed / duration_s
//   tokens_per_s        generated tokens of completed calls / duration_s
//                       (Contemplate: agents and aggregator passes)
//   agent_tokens_per_s  of those, the Contemplate agents'
//   ttft_ms, e2e_ms     time to first token (see call.h) and end-to-end
//                       latency of completed calls: count, mean, p50, p95,
//                       p99, max (nearest rank, latency_stats.h)
//   rejected_ms         latency of calls refused for overload or quota:
//                       RESOURCE_EXHAUSTED, over HTTP 429 (how cheap a
//                       refusal is); client_cap calls are not among them
//   errors              one message per by_status name other than OK and
//                       "200", as an example (HTTP: the error body's
//                       message; stream_error: "TYPE (CODE): MESSAGE" of the
//                       error event)
//   open loop also: offered_rate_rps (issued / issue_window_s, the rate
//   actually offered) and max_dispatch_lag_ms.
// Thread-safe: pure functions.
#ifndef CONCLAVE_LOADTEST_LOAD_REPORT_H_
#define CONCLAVE_LOADTEST_LOAD_REPORT_H_

#include <string>

#include "grpcpp/support/status.h"
#include "loadtest/load/load_runner.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {

// "OK", "CANCELLED", ..., "UNAUTHENTICATED" (as grpc::StatusCode spells
// them); "CODE_<n>" for a number outside the enum.
std::string StatusCodeName(grpc::StatusCode code);

// The by_status name of a call: its http_status for an HTTP call, else
// StatusCodeName(code).
std::string StatusName(const CallResult& result);

// Where the prompts came from ("builtin" or the file) and how many, and the
// mix, for the config echo.
struct ReportInputs {
  std::string prompts_source;
  int num_prompts = 0;
  Mix mix;
};

// Keys in the order above (config first).
nlohmann::ordered_json BuildReport(const LoadConfig& config, const ReportInputs& inputs,
                                   const RunOutcome& outcome);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_REPORT_H_
