#include "server/grpc_server.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/conclave_service.h"
#include "server/request_threads.h"
#include "server/service_context.h"
#include "spdlog/spdlog.h"

namespace conclave::server {
namespace {

std::string HostPort(const std::string& host, int port) {
  // IPv6 literals need brackets.
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(orchestrator::EngineClient& client,
                                                              const ModelInfo& model,
                                                              const ServerOptions& options,
                                                              ServerMetrics* metrics,
                                                              AccessControl* access) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grpc-port=", options.port, " must be in [0, 65535]"));
  }
  if (options.max_agents < 1 || options.max_agents > client.max_sequences_per_request()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-agents=", options.max_agents, " must be in [1, ",
                     client.max_sequences_per_request(), "] (the engine's sequences per request)"));
  }
  if (options.max_concurrent_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_concurrent_requests=", options.max_concurrent_requests, " must be >= 1"));
  }
  const int context = client.context_length();
  RequestLimits limits;
  limits.model_id = model.id;
  limits.context_length = context;
  limits.vocab_size = client.tokenizer().vocab_size();
  limits.max_agents = options.max_agents;
  limits.max_prompt_tokens = options.max_prompt_tokens > 0 ? options.max_prompt_tokens : context - 1;
  limits.max_tokens_limit = options.max_tokens_limit > 0 ? options.max_tokens_limit : context - 1;
  if (limits.max_prompt_tokens > context - 1) {
    return absl::InvalidArgumentError(absl::StrCat("--max-prompt-tokens=", limits.max_prompt_tokens,
                                                   " must be below the model's context of ", context));
  }
  if (limits.max_tokens_limit > context - 1) {
    return absl::InvalidArgumentError(absl::StrCat("--max-tokens-limit=", limits.max_tokens_limit,
                                                   " must be below the model's context of ", context));
  }

  std::unique_ptr<GrpcServer> s(new GrpcServer());
  if (metrics == nullptr) {
    s->own_metrics_ = std::make_unique<ServerMetrics>(model.id, CurrentBuild("unknown"));
    metrics = s->own_metrics_.get();
  }
  if (access == nullptr) {
    s->own_access_ = AccessControl::Open();
    access = s->own_access_.get();
  }
  s->threads_ = std::make_unique<RequestThreads>(options.max_concurrent_requests);
  s->context_ =
      std::make_unique<ServiceContext>(client, limits, model, *s->threads_, *metrics, *access);
  s->service_ = NewConclaveService(*s->context_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string listen = HostPort(options.bind, options.port);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
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
                 absl::ToDoubleSeconds(grace), threads_->running());
    // Returns once every call has finished; calls still running at the
    // deadline are cancelled (OnCancel aborts their engine requests).
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    threads_->Close();
    server_->Wait();
    spdlog::info("grpc server stopped");
  });
}

}  // namespace conclave::server
