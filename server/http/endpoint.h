// What the HTTP server (http_server.h) gives every endpoint handler, and
// the steps they share before a call runs.
// Thread-safe.
#ifndef CONCLAVE_SERVER_HTTP_ENDPOINT_H_
#define CONCLAVE_SERVER_HTTP_ENDPOINT_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "server/http/active_calls.h"
#include "server/http/http_response.h"
#include "server/service_context.h"

namespace httplib {
struct Request;
}  // namespace httplib

namespace conclave::server::http {

struct EndpointContext {
  ServiceContext& service;  // shared with the gRPC services
  ActiveCalls& calls;       // HTTP calls in flight (shutdown cancels them)
  // Set when shutdown begins: calls that reach a handler then get 503.
  const std::atomic<bool>& draining;
};

// Reads the request body within the server's limits into `*body`, or says
// why it cannot: 415 (not JSON), 413 (too large), 400 (unreadable).
using BodyReader = absl::FunctionRef<std::optional<HttpError>(std::string* body)>;

// The value of the request's Authorization header (the first one), for
// AccessControl::Authenticate; nullopt when there is none.
std::optional<std::string> AuthorizationOf(const httplib::Request& req);

// 503 for calls that arrive while the server is shutting down.
HttpError ShuttingDownError();

// Seconds since the Unix epoch, for OpenAI's `created`.
int64_t UnixSeconds(absl::Time t);

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_ENDPOINT_H_
