// Runs one bounded load: sends requests to a conclave server in an open loop
// (Poisson arrivals at `rate` per second, never waiting for answers) or a
// closed loop (`concurrency` clients, each sending its next request as soon
// as its last one ends, or after the retry-after of a refusal), stops
// sending at `duration` or after `requests`, whichever
// comes first, then waits up to `drain_timeout` for the calls in flight and
// cancels what is left.
//
// One dispatcher thread (the caller's) decides when to send. gRPC: the calls
// run on gRPC's callback API over `channels` channels (each its own HTTP/2
// connection), taken in turn. HTTP (the OpenAI-compatible endpoint): each
// call runs on a thread and a connection of its own (http_call.h), at most
// `max_http_in_flight` at once; every thread is joined before RunLoad
// returns.
#ifndef CONCLAVE_LOADTEST_LOAD_LOAD_RUNNER_H_
#define CONCLAVE_LOADTEST_LOAD_LOAD_RUNNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loadtest/load/call.h"
#include "loadtest/load/requests.h"
#include "loadtest/load/workload.h"

namespace conclave::loadtest {

enum class Protocol { kGrpc, kHttp };
// "grpc", "http" (the names --protocol takes).
const char* ProtocolName(Protocol protocol);

struct LoadConfig {
  Protocol protocol = Protocol::kGrpc;
  std::string target;  // HOST:PORT, checked to be loopback by the caller
  int channels = 1;    // gRPC only
  double rate = 0;      // > 0: open loop, requests per second
  int concurrency = 0;  // > 0: closed loop (exactly one of the two is set)
  RequestShape shape;
  absl::Duration duration = absl::InfiniteDuration();  // stop sending after
  int64_t requests = 0;                                // ... or after this many (0: no count)
  absl::Duration drain_timeout = absl::Seconds(30);
  absl::Duration deadline = absl::InfiniteDuration();  // per call
  uint64_t seed = 1;  // arrivals draw from seed, the workload from seed + 1
  // Closed loop: a client whose call was refused with RESOURCE_EXHAUSTED
  // waits the server's retry-after (1 s when it sent none) before its next
  // call, as a well-behaved client does; false: it sends again at once
  // (which turns a full queue into a stream of refusals).
  bool honor_retry_after = true;
  std::string api_key;
  // HTTP: the most calls in flight (one thread each). A call due while this
  // many are in flight is not sent: it ends at once as "client_cap"
  // (http_outcome.h). A closed loop's concurrency may not exceed it.
  int max_http_in_flight = 1024;
};

struct RunOutcome {
  std::vector<CallResult> results;  // one per call sent, in the order they ended
  int64_t issued = 0;
  // Start -> when sending stopped: `duration` when it stopped the run (the
  // window the arrivals were drawn over), else the last send.
  absl::Duration issue_window = absl::ZeroDuration();
  absl::Duration wall = absl::ZeroDuration();  // start -> the last call ended
  // Open loop: how far behind its scheduled time the dispatcher sent, at
  // worst (a large value means the generator, not the server, limited the
  // offered rate).
  absl::Duration max_dispatch_lag = absl::ZeroDuration();
};

// `workload` decides each request's mode and question (seeded by the
// caller; HTTP: only modes with an HTTP route). Connects every channel first
// (HTTP: waits for an answer), UNAVAILABLE naming the target when none comes
// within 10 s; INVALID_ARGUMENT for an HTTP closed loop wider than
// max_http_in_flight. Then runs and blocks until every call has ended.
absl::StatusOr<RunOutcome> RunLoad(const LoadConfig& config, Workload& workload);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_LOAD_RUNNER_H_
