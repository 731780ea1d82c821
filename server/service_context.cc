#include "server/service_context.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "server/metrics/build_info.h"

namespace conclave::server {

absl::StatusOr<std::unique_ptr<ServiceContext>> ServiceContext::Create(
    orchestrator::EngineClient& client, const ModelInfo& model, const ServiceOptions& options,
    ServerMetrics* metrics, AccessControl* access) {
  if (options.max_agents < 1 || options.max_agents > client.max_sequences_per_request()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-agents=", options.max_agents, " must be in [1, ",
                     client.max_sequences_per_request(), "] (the engine's sequences per request)"));
  }
  if (options.max_concurrent_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-concurrent-requests=", options.max_concurrent_requests, " must be >= 1"));
  }
  const int context = client.context_length();
  RequestLimits limits;
  limits.model_id = model.id;
  limits.context_length = context;
  limits.vocab_size = client.tokenizer().vocab_size();
  limits.max_agents = options.max_agents;
  limits.max_prompt_tokens =
      options.max_prompt_tokens > 0 ? options.max_prompt_tokens : context - 1;
  limits.max_tokens_limit = options.max_tokens_limit > 0 ? options.max_tokens_limit : context - 1;
  if (limits.max_prompt_tokens > context - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-prompt-tokens=", limits.max_prompt_tokens,
                     " must be below the model's context of ", context));
  }
  if (limits.max_tokens_limit > context - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-tokens-limit=", limits.max_tokens_limit,
                     " must be below the model's context of ", context));
  }

  std::unique_ptr<ServiceContext> c(new ServiceContext(client, std::move(limits), model));
  if (metrics == nullptr) {
    c->own_metrics_ = std::make_unique<ServerMetrics>(model.id, CurrentBuild("unknown"));
    metrics = c->own_metrics_.get();
  }
  if (access == nullptr) {
    c->own_access_ = AccessControl::Open();
    access = c->own_access_.get();
  }
  c->metrics_ = metrics;
  c->access_ = access;
  c->threads_ = std::make_unique<RequestThreads>(options.max_concurrent_requests);
  return c;
}

ServiceContext::~ServiceContext() { Close(); }

std::string ServiceContext::NextRequestId() {
  return absl::StrCat(next_request_id_.fetch_add(1, std::memory_order_relaxed));
}

uint64_t ServiceContext::DrawSeed() {
  // absl::BitGen is not thread-safe; one per call is cheap next to a request.
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

}  // namespace conclave::server
