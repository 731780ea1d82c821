// What the HTTP endpoint sends back, apart from the endpoints' own JSON:
// OpenAI's error bodies and the HTTP status and headers that go with them,
// JSON text that never throws, and server-sent-event framing.
//
//   {"error": {"message": "...", "type": "invalid_request_error",
//              "param": "temperature", "code": null}}
//
// Pure parsers return absl::Status; the request field at fault and
// OpenAI's error code ride on it as payloads (WithParam, WithErrorCode), so
// that ToHttpError can fill `param` and `code`. The HTTP status comes from
// the one table in server/status_map (ToHttpStatus), Retry-After from a
// status's retry-after payload (server/status_map's WithRetryAfter gives
// every RESOURCE_EXHAUSTED one).
// Thread-safe: pure functions, except the two that fill an
// httplib::Response.
#ifndef CONCLAVE_SERVER_HTTP_HTTP_RESPONSE_H_
#define CONCLAVE_SERVER_HTTP_HTTP_RESPONSE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace httplib {
class DataSink;
struct Response;
}  // namespace httplib

namespace conclave::server::http {

// An OpenAI-style error: the HTTP status, the body's fields and the
// Retry-After header.
struct HttpError {
  int status = 500;
  std::string message;
  std::string type;                            // ErrorType(status)
  std::optional<std::string> param;            // the request field at fault
  std::optional<std::string> code;             // "model_not_found", "invalid_api_key", ...
  std::optional<int64_t> retry_after_seconds;  // whole seconds, >= 1
  // The canonical code of the outcome, for logs and metrics (whose `code`
  // label takes gRPC's names for both transports).
  absl::StatusCode canonical = absl::StatusCode::kUnknown;
};

// `status` (not OK) carrying the request field at fault: "temperature",
// "messages[2].content", "stream_options.include_usage".
absl::Status WithParam(absl::Status status, absl::string_view param);
// `status` (not OK) carrying OpenAI's error code ("model_not_found").
absl::Status WithErrorCode(absl::Status status, absl::string_view code);
std::optional<std::string> ParamOf(const absl::Status& status);
std::optional<std::string> ErrorCodeOf(const absl::Status& status);

// INVALID_ARGUMENT with `message`, naming `param`.
absl::Status InvalidField(absl::string_view param, absl::string_view message);

// OpenAI's error type for an HTTP status: 400, 405, 413, 415
// "invalid_request_error"; 401 "authentication_error"; 403
// "permission_error"; 404 "not_found_error"; 429 "rate_limit_error";
// 5xx "server_error".
const char* ErrorType(int http_status);

// The error of a non-OK status: its HTTP status through ToHttpStatus, its
// message, the param and code payloads (else OpenAI's code for 401, 404
// and 429), and Retry-After for RESOURCE_EXHAUSTED.
HttpError ToHttpError(const absl::Status& status);

// An error the HTTP layer makes itself (unknown route, wrong method, body
// too large, not JSON): HTTP `status`, recorded as `canonical`.
HttpError MakeHttpError(int status, absl::StatusCode canonical, std::string message,
                        std::optional<std::string> code = {});

// {"error": {"message", "type", "param", "code"}}; param and code are null
// when absent.
std::string ErrorBody(const HttpError& error);

// `value` as compact JSON text. Bytes of strings that are not UTF-8 (a token
// piece may be half a character) become U+FFFD, so it never throws.
std::string DumpJson(const nlohmann::json& value);
std::string DumpJson(const nlohmann::ordered_json& value);

// One server-sent event carrying `json`: "data: <json>\n\n".
std::string SseData(absl::string_view json);
// The event that ends an OpenAI stream.
inline constexpr absl::string_view kSseDone = "data: [DONE]\n\n";

// Fills `res` with a JSON body (application/json).
void SendJson(httplib::Response& res, int status, std::string body);
// Fills `res` with `error`'s status, body and Retry-After header.
void SendError(httplib::Response& res, const HttpError& error);
// Makes `res` a server-sent-event stream (200, text/event-stream, not
// cached): the connection's thread calls `write` to produce it (false: stop)
// and then `done(success)`, also when `write` never ran; success is false
// when the client went away or a write failed.
void SendEventStream(httplib::Response& res, std::function<bool(httplib::DataSink&)> write,
                     std::function<void(bool success)> done);

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_HTTP_RESPONSE_H_
