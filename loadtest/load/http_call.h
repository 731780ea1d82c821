// One call of the load generator on the server's OpenAI-compatible HTTP
// endpoint (docs/http.md). cpp-httplib's client blocks, so each call runs on
// a thread of its own (CallThreads) and a connection of its own (the
// endpoint serves one request per connection): it POSTs the streamed
// request (http_requests.h), reads the events as they arrive
// (http_stream.h), and when the answer ends hands its CallResult to `done`
// from that thread; `done` may destroy the call.
//
// The result's http_status names the end (http_outcome.h) and its code is
// the gRPC code that end stands for. Time to first token as call.h defines
// it (the first chat chunk with content; the first agent text or the final
// answer). retry_after: a refusal's Retry-After header.
//
// Deadline (options.deadline): every read waits at most the deadline and
// the call gives up at the first bytes after it, so it ends at the deadline
// when no byte comes or bytes keep coming, and at most one deadline late
// when a stream goes silent just before it.
// Cancel: the call stops at once (ClientImpl::stop shuts its socket; a call
// that has not written its request yet sees the flag first) and ends
// "cancelled", unless it had already finished.
// Thread-safe: Cancel may be called from any thread until `done` has run.
#ifndef CONCLAVE_LOADTEST_LOAD_HTTP_CALL_H_
#define CONCLAVE_LOADTEST_LOAD_HTTP_CALL_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "loadtest/load/call.h"
#include "loadtest/load/call_threads.h"
#include "loadtest/load/http_requests.h"
#include "loadtest/load/target.h"
#include "loadtest/load/workload.h"

namespace conclave::loadtest {

// Creates a call; Start() starts its thread on `threads`, which must outlive
// the thread (CallThreads::JoinAll).
std::unique_ptr<Call> NewHttpCall(CallThreads& threads, const HostPort& target, Mode mode,
                                  HttpRequest request, const CallOptions& options, Call::Done done);

// Waits until something answers HTTP at `target` (GET /v1/models; any
// status does, a 401 too). UNAVAILABLE naming the target after `timeout`.
absl::Status WaitForHttpServer(const HostPort& target, absl::Duration timeout);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_HTTP_CALL_H_
