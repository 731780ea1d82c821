// The gRPC server: conclave.v1.Conclave, the standard health service
// (grpc.health.v1.Health, SERVING while up) and server reflection (so
// grpcurl works without .proto files), on one listening address, in
// plaintext or TLS.
//
// Shutdown sequence: health goes NOT_SERVING; the server stops accepting
// calls and lets in-flight calls run until the grace period ends; calls
// still running are then cancelled (their engine requests are aborted and
// their KV blocks freed); Shutdown returns once every call has finished.
// A server that made its own ServiceContext also joins its request threads
// then; one started on a shared context leaves that to the context's owner
// (the HTTP endpoint's calls use the same threads). The engine itself is
// not stopped here (see ServingEngine::Shutdown).
// Thread-safe.
#ifndef CONCLAVE_SERVER_GRPC_SERVER_H_
#define CONCLAVE_SERVER_GRPC_SERVER_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "orchestrator/engine_client.h"
#include "server/access_control.h"
#include "server/metrics/server_metrics.h"
#include "server/serving_engine.h"
#include "server/tls_credentials.h"
#include "server/validation.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace conclave::server {

class ServiceContext;

struct ServerOptions {
  std::string bind = "127.0.0.1";  // address to listen on ("0.0.0.0", "::1", ...)
  int port = 50051;                // 0: pick a free port (see GrpcServer::port)
  // TLS (--tls-cert, --tls-key): absent serves plaintext.
  std::optional<TlsCredentials> tls;
  // The ServiceContext's limits, used only by the Start that makes its own
  // context (see ServiceOptions).
  int max_agents = 8;                 // Contemplate agents per request
  int max_prompt_tokens = 0;          // 0: the model's context - 1
  int max_tokens_limit = 0;           // 0: the model's context - 1
  int max_concurrent_requests = 256;  // running Generate/Contemplate calls
};

class GrpcServer {
 public:
  // Starts serving on a context of its own (tests, in-process servers):
  // ServiceContext::Create's errors, and UNAVAILABLE when the address cannot
  // be bound. `client`, and `metrics` and `access` when given, must outlive
  // the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(orchestrator::EngineClient& client,
                                                           const ModelInfo& model,
                                                           const ServerOptions& options,
                                                           ServerMetrics* metrics = nullptr,
                                                           AccessControl* access = nullptr);
  // Starts serving `context` (shared with the other transports; it must
  // outlive the server) on options.bind:options.port; the limit fields of
  // `options` are the context's business and are not read. INVALID_ARGUMENT
  // for a port out of range, UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(ServiceContext& context,
                                                           const ServerOptions& options);
  ~GrpcServer();  // Shutdown(absl::ZeroDuration())
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The port actually bound, and "host:port" as a client dials it.
  int port() const { return port_; }
  const std::string& address() const { return address_; }
  const RequestLimits& limits() const;

  // See the shutdown sequence above. Idempotent; later calls return at once.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;

  std::unique_ptr<ServiceContext> own_context_;  // when Start made one
  ServiceContext* context_ = nullptr;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::once_flag shutdown_once_;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_GRPC_SERVER_H_
