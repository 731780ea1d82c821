// One in-flight RPC of the load generator on gRPC's callback API
// (grpc::ClientReadReactor): no thread per stream, so one process keeps
// thousands of streams open. A call reads every message as it arrives,
// notes when the first token arrives, and when gRPC ends it hands its
// CallResult to the `done` callback, which may destroy the call.
//
// Time to first token (TTFT), from just before the call starts:
//   Generate     the first GenerateDelta carrying text or token ids
//                (MODE_THINKING: the first thinking token)
//   Contemplate  the first AgentTextDelta carrying text (with
//                stream_agent_text) or the FinalAnswer, whichever comes
//                first: the first moment the client has model output to
//                show. AgentStarted events carry none and do not count.
// Thread-safe: Cancel may be called from any thread until `done` has run.
#ifndef CONCLAVE_LOADTEST_LOAD_CALL_H_
#define CONCLAVE_LOADTEST_LOAD_CALL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "conclave/v1/conclave.grpc.pb.h"
#include "grpcpp/support/status.h"
#include "loadtest/load/workload.h"

namespace conclave::loadtest {

struct CallResult {
  Mode mode = Mode::kInstant;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;                          // the status message ("" for OK)
  absl::Duration start = absl::ZeroDuration();  // the run's start -> the call's start
  // The call's start -> its first token (see above); InfiniteDuration when
  // none arrived.
  absl::Duration first_token = absl::InfiniteDuration();
  absl::Duration latency = absl::ZeroDuration();  // the call's start -> its end
  // From the final message's usage: every generated token (Contemplate:
  // agents and aggregator), and of those the agents' (Contemplate only).
  int64_t generated_tokens = 0;
  int64_t agent_tokens = 0;
  bool cancelled_at_drain = false;  // still running when the drain timed out
  // The server's retry-after trailer (whole seconds) of a refused call;
  // zero when it sent none.
  absl::Duration retry_after = absl::ZeroDuration();
  // HTTP calls (http_call.h) only: how the call ended as the report names
  // it ("200", "429", "timeout", ...: http_outcome.h); `code` is then the
  // gRPC code that end stands for. Empty for gRPC calls, named by `code`.
  std::string http_status;
};

class Call {
 public:
  using Done = std::function<void(int64_t id, CallResult result)>;
  virtual ~Call() = default;
  // Sends the request (once). `done` runs when the call has ended.
  virtual void Start() = 0;
  // Asks gRPC to end the call (it then ends CANCELLED unless it finished).
  // `at_drain` marks the result as cancelled by the drain timeout.
  virtual void Cancel(bool at_drain) = 0;
};

struct CallOptions {
  int64_t id = 0;
  absl::Time run_start;
  absl::Duration deadline = absl::InfiniteDuration();  // per call; infinite: none
  std::string api_key;  // sent as "authorization: Bearer <key>" when set
};

// Creates a call; Start() sends it. The caller keeps the call alive until
// `done` runs (and may destroy it there). `stub` must outlive the call.
std::unique_ptr<Call> NewGenerateCall(v1::Conclave::Stub& stub, v1::GenerateRequest request,
                                      Mode mode, const CallOptions& options, Call::Done done);
std::unique_ptr<Call> NewContemplateCall(v1::Conclave::Stub& stub, v1::ContemplateRequest request,
                                         const CallOptions& options, Call::Done done);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_CALL_H_
