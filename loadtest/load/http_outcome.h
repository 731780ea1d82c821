// How a call of the load generator on the HTTP endpoint ended, as its report
// names it (by_status, errors), and the gRPC code that end stands for in
// CallResult::code, so that the runner and the report treat both protocols
// alike: OK completed, RESOURCE_EXHAUSTED was refused for overload (a
// closed-loop client backs off; rejected_ms).
//
//   "200"               the stream ended with data: [DONE] and carried no
//                       error event (OK)
//   "400", "429", ...   the server answered with that status; the message is
//                       its error body's error.message (CodeOfHttpStatus)
//   "stream_error"      a 200 stream that carried an error event (its type,
//                       code and message), or that ended before [DONE]
//                       (UNKNOWN)
//   "timeout"           --deadline-ms passed first (DEADLINE_EXCEEDED)
//   "cancelled"         cancelled when the drain timed out (CANCELLED)
//   "connection_error"  no HTTP answer: refused, reset, unreadable
//                       (UNAVAILABLE)
//   "client_cap"        never sent: --max-http-in-flight calls were already
//                       in flight (ABORTED)
// Thread-safe: pure functions.
#ifndef CONCLAVE_LOADTEST_LOAD_HTTP_OUTCOME_H_
#define CONCLAVE_LOADTEST_LOAD_HTTP_OUTCOME_H_

#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace conclave::loadtest {

inline constexpr absl::string_view kHttpStreamError = "stream_error";
inline constexpr absl::string_view kHttpTimeout = "timeout";
inline constexpr absl::string_view kHttpCancelled = "cancelled";
inline constexpr absl::string_view kHttpConnectionError = "connection_error";
inline constexpr absl::string_view kHttpClientCap = "client_cap";

// "200", "429", ...: the status as the report names it.
std::string HttpStatusName(int status);

// The gRPC code an HTTP status stands for, as the server's table
// (server/status_map) maps them the other way: 200 OK, 400 and 413
// INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
// NOT_FOUND, 429 RESOURCE_EXHAUSTED, 499 CANCELLED, 500 INTERNAL, 501
// UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED; UNKNOWN otherwise.
grpc::StatusCode CodeOfHttpStatus(int status);

// The error.message of an OpenAI error body ({"error": {"message": ...}});
// for a body that is not one, its first 200 bytes ("(empty body)" when
// empty).
std::string ErrorBodyMessage(absl::string_view body);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_HTTP_OUTCOME_H_
