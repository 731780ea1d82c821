#include "server/generate_job.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace conclave::server {

GenerateJob::GenerateJob(orchestrator::EngineClient& client, GeneratePlan plan,
                         RequestLimits limits, uint64_t seed, uint64_t cache_salt)
    : client_(client),
      plan_(std::move(plan)),
      limits_(std::move(limits)),
      cache_salt_(cache_salt),
      thinking_(client) {
  if (!plan_.seed_given) plan_.sampling.seed = seed;
}

absl::StatusOr<GenerateOutcome> GenerateJob::Run(const Sink& sink) {
  std::vector<engine::ChatMessage> messages = plan_.messages;
  if (plan_.mode == GenerateMode::kThinking) {
    messages = orchestrator::WithThinkingInstruction(std::move(messages));
  }
  absl::StatusOr<std::vector<int32_t>> prompt =
      plan_.raw_prompt.has_value()
          ? client_.tokenizer().Encode(*plan_.raw_prompt, /*add_special=*/true,
                                       /*parse_special=*/true)
          : orchestrator::ChatPromptIds(client_, messages);
  if (!prompt.ok()) return prompt.status();
  absl::StatusOr<TokenBudget> budget =
      ResolveTokenBudget(plan_, static_cast<int>(prompt->size()), limits_);
  if (!budget.ok()) return budget.status();

  absl::StatusOr<GenerateOutcome> outcome =
      plan_.mode == GenerateMode::kThinking
          ? RunThinking(*std::move(prompt), *budget, sink)
          : RunInstant(*std::move(prompt), budget->max_tokens, sink);
  if (!outcome.ok()) return outcome;
  outcome->seed = plan_.sampling.seed;
  outcome->max_tokens = budget->max_tokens;
  outcome->first_token_at = first_token_at_;
  return outcome;
}

void GenerateJob::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (stream_ != nullptr) stream_->Cancel();
  thinking_.Cancel();
}

void GenerateJob::NoteTokens(size_t count) {
  if (count > 0 && first_token_at_ == absl::InfinitePast()) first_token_at_ = absl::Now();
}

absl::StatusOr<GenerateOutcome> GenerateJob::RunInstant(std::vector<int32_t> prompt,
                                                        int max_tokens, const Sink& sink) {
  GenerateOutcome outcome;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) {
      outcome.finish = engine::FinishReason::kAborted;
      return outcome;
    }
  }
  engine::EngineRequest request;
  request.prompt = std::move(prompt);
  request.sampling = {plan_.sampling};
  request.max_tokens = max_tokens;
  request.stop = plan_.stop;
  request.cache_salt = cache_salt_;
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> submitted =
      client_.Submit(std::move(request));
  if (!submitted.ok()) return submitted.status();
  std::shared_ptr<engine::RequestStream> stream = *std::move(submitted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_ = stream;
    if (cancelled_) stream->Cancel();  // Cancel came while we were submitting
  }

  engine::RequestUpdate update;
  while (stream->Next(update) == engine::RequestStream::Poll::kUpdate) {
    for (engine::SequenceDelta& d : update.deltas) {
      NoteTokens(d.tokens.size());
      if (d.finish != engine::FinishReason::kNone) outcome.finish = d.finish;
      if (!d.tokens.empty() || !d.text.empty()) {
        sink(GenerateChunk{false, std::move(d.text), std::move(d.tokens)});
      }
    }
    outcome.usage = update.usage;
    if (update.done) {
      if (!update.status.ok()) return update.status;
      break;
    }
  }
  if (outcome.finish == engine::FinishReason::kNone ||
      outcome.finish == engine::FinishReason::kError) {
    return absl::InternalError(
        absl::StrCat("engine request ", stream->id(), " ended without a finish reason"));
  }
  return outcome;
}

absl::StatusOr<GenerateOutcome> GenerateJob::RunThinking(std::vector<int32_t> prompt,
                                                         const TokenBudget& budget,
                                                         const Sink& sink) {
  orchestrator::ThinkingRequest request;
  request.prompt = std::move(prompt);
  request.sampling = plan_.sampling;
  request.max_tokens = budget.max_tokens;
  request.thinking_budget = budget.thinking_budget;
  request.stop = plan_.stop;
  request.cache_salt = cache_salt_;
  absl::StatusOr<orchestrator::ThinkingResult> result = thinking_.Run(
      request, [&](orchestrator::ThinkingSegment segment, const engine::SequenceDelta& d) {
        NoteTokens(d.tokens.size());
        if (d.tokens.empty() && d.text.empty()) return;
        sink(GenerateChunk{segment == orchestrator::ThinkingSegment::kThinking, d.text, d.tokens});
      });
  if (!result.ok()) return result.status();
  GenerateOutcome outcome;
  outcome.finish = result->finish;
  outcome.usage = result->usage;
  outcome.thinking_tokens = result->thinking_tokens;
  outcome.thinking_end = result->thinking_end;
  return outcome;
}

}  // namespace conclave::server
