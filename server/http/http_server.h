// The OpenAI-compatible HTTP endpoint (docs/http.md): POST
// /v1/chat/completions, POST /v1/contemplations, GET /v1/models and GET
// /v1/models/{id} on one address, in plaintext or TLS, with cpp-httplib
// (Debian's libcpp-httplib) underneath. This file owns the library's
// lifecycle, the routing (404 for unknown paths, 405 with Allow for wrong
// methods), the request-body rules (application/json only: 415; at most
// max_body_bytes, checked on Content-Length before reading and while
// reading chunked bodies: 413) and OpenAI error bodies for the errors the
// library makes itself; the endpoints are their handlers'.
//
// Threads: a fixed pool of `threads` workers, one per connection, for the
// connection's life (keep-alive is off: one request per connection). A
// call holds its worker while it runs, a streaming one until its last
// event, and a request thread of the shared ServiceContext for its job.
//
// Shutdown, as GrpcServer's: StopAccepting closes the listening socket
// (new connections are refused; a request already accepted gets 503), the
// calls in flight may finish until the grace period ends, the rest are
// cancelled (their engine requests aborted, KV blocks freed), and Shutdown
// returns once every connection has been answered. The ServiceContext's
// request threads are its owner's to join.
// Thread-safe.
#ifndef CONCLAVE_SERVER_HTTP_HTTP_SERVER_H_
#define CONCLAVE_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/active_calls.h"
#include "server/http/chat_completions_handler.h"
#include "server/http/contemplations_handler.h"
#include "server/http/models_handler.h"
#include "server/service_context.h"
#include "server/tls_credentials.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace conclave::server::http {

struct HttpServerOptions {
  std::string bind = "127.0.0.1";     // as the gRPC server's
  int port = 8080;                    // 0: pick a free port (see HttpServer::port)
  int threads = 64;                   // worker threads: connections served at once
  int64_t max_body_bytes = 1 << 20;   // larger request bodies get 413
  std::optional<TlsCredentials> tls;  // absent: plaintext
};

class HttpServer {
 public:
  // Starts serving `service` (which must outlive the server).
  // INVALID_ARGUMENT for options out of range or TLS material OpenSSL
  // refuses; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(ServiceContext& service,
                                                           const HttpServerOptions& options);
  ~HttpServer();  // Shutdown(absl::ZeroDuration())
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port actually bound, and "host:port" as a client dials it.
  int port() const { return port_; }
  const std::string& address() const { return address_; }

  // Closes the listening socket and turns away (503) requests that reach a
  // handler from now on; calls in flight go on. Idempotent.
  void StopAccepting();

  // StopAccepting; waits up to `grace` for the calls in flight; cancels
  // those still running; returns once every connection has been answered.
  // Idempotent; later calls return at once.
  void Shutdown(absl::Duration grace);

 private:
  HttpServer(ServiceContext& service, const HttpServerOptions& options);
  void AddRoutes();

  const HttpServerOptions options_;
  std::atomic<bool> draining_{false};
  ActiveCalls calls_;
  ChatCompletionsHandler chat_;
  ContemplationsHandler contemplations_;
  ModelsHandler models_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<int> listen_fd_{-1};  // the listening socket (httplib owns it)
  std::thread listener_;            // runs httplib's accept loop
  int port_ = 0;
  std::string address_;
  std::once_flag stop_accepting_once_;
  std::once_flag shutdown_once_;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_HTTP_SERVER_H_
