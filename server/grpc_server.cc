#include "server/grpc_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "server/conclave_service.h"
#include "server/host_port.h"
#include "server/request_threads.h"
#include "server/service_context.h"
#include "spdlog/spdlog.h"

namespace conclave::server {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(orchestrator::EngineClient& client,
                                                              const ModelInfo& model,
                                                              const ServerOptions& options,
                                                              ServerMetrics* metrics,
                                                              AccessControl* access) {
  ServiceOptions service;
  service.max_agents = options.max_agents;
  service.max_prompt_tokens = options.max_prompt_tokens;
  service.max_tokens_limit = options.max_tokens_limit;
  service.max_concurrent_requests = options.max_concurrent_requests;
  absl::StatusOr<std::unique_ptr<ServiceContext>> context =
      ServiceContext::Create(client, model, service, metrics, access);
  if (!context.ok()) return context.status();
  absl::StatusOr<std::unique_ptr<GrpcServer>> s = Start(**context, options);
  if (!s.ok()) return s.status();
  (*s)->own_context_ = *std::move(context);
  return s;
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(ServiceContext& context,
                                                              const ServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grpc-port=", options.port, " must be in [0, 65535]"));
  }
  std::unique_ptr<GrpcServer> s(new GrpcServer());
  s->context_ = &context;
  s->service_ = NewConclaveService(context);

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.has_value()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options.tls->private_key_pem, options.tls->cert_chain_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string listen = HostPort(options.bind, options.port);
  builder.AddListeningPort(listen, credentials, &bound_port);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  s->port_ = bound_port;
  s->address_ = HostPort(options.bind, bound_port);
  // The whole server ("") and the API service by name.
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(ConclaveServiceName(), true);
  return s;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

const RequestLimits& GrpcServer::limits() const { return context_->limits(); }

void GrpcServer::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [&] {
    if (server_ == nullptr) return;
    server_->GetHealthCheckService()->SetServingStatus(false);
    spdlog::info("grpc server shutting down (grace {}s, {} requests running)",
                 absl::ToDoubleSeconds(grace), context_->threads().running());
    // Returns once every call has finished; calls still running at the
    // deadline are cancelled (OnCancel aborts their engine requests).
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    if (own_context_ != nullptr) own_context_->Close();
    server_->Wait();
    spdlog::info("grpc server stopped");
  });
}

}  // namespace conclave::server
