#include "server/generate_job.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/access_control.h"

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
  if (plan_.n != 1 && plan_.mode != GenerateMode::kInstant) {
    return absl::InvalidArgumentError(
        absl::StrCat("n=", plan_.n, " needs MODE_INSTANT; thinking mode samples one sequence"));
  }
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
  request.n = plan_.n;
  request.sampling = {plan_.sampling};  // sequence i draws with seed + i
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

  outcome.finishes.assign(plan_.n, engine::FinishReason::kNone);
  engine::RequestUpdate update;
  while (stream->Next(update) == engine::RequestStream::Poll::kUpdate) {
    for (engine::SequenceDelta& d : update.deltas) {
      NoteTokens(d.tokens.size());
      if (d.index < 0 || d.index >= plan_.n) {
        return absl::InternalError(absl::StrCat("engine request ", stream->id(),
                                                " sent sequence ", d.index, " of ", plan_.n));
      }
      if (d.finish != engine::FinishReason::kNone) outcome.finishes[d.index] = d.finish;
      if (!d.tokens.empty() || !d.text.empty()) {
        sink(GenerateChunk{false, std::move(d.text), std::move(d.tokens), d.index, d.finish});
      }
    }
    outcome.usage = update.usage;
    if (update.done) {
      if (!update.status.ok()) return update.status;
      break;
    }
  }
  for (engine::FinishReason finish : outcome.finishes) {
    if (finish == engine::FinishReason::kNone || finish == engine::FinishReason::kError) {
      return absl::InternalError(
          absl::StrCat("engine request ", stream->id(), " ended without a finish reason"));
    }
  }
  outcome.finish = outcome.finishes[0];
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
  outcome.finishes = {result->finish};
  outcome.usage = result->usage;
  outcome.thinking_tokens = result->thinking_tokens;
  outcome.thinking_end = result->thinking_end;
  return outcome;
}

auth::AdmissionRequest GenerateAdmission(const GeneratePlan& plan, const RequestLimits& limits) {
  const bool thinking = plan.mode == GenerateMode::kThinking;
  int max_tokens = 0;
  if (plan.max_tokens.has_value()) {
    max_tokens = *plan.max_tokens;
  } else {
    int wanted = thinking ? kDefaultThinkingMaxTokens : kDefaultInstantMaxTokens;
    if (plan.thinking_budget.has_value()) wanted = std::max(wanted, *plan.thinking_budget + 256);
    max_tokens = std::min(wanted, limits.max_tokens_limit);
  }
  int64_t prompt_bytes = 0;
  if (plan.raw_prompt.has_value()) {
    prompt_bytes = static_cast<int64_t>(plan.raw_prompt->size());
  } else {
    for (const engine::ChatMessage& m : plan.messages) {
      prompt_bytes += static_cast<int64_t>(m.content.size());
    }
  }
  auth::AdmissionRequest a;
  a.agents = plan.n;
  if (thinking) {
    a.thinking_budget = plan.thinking_budget.has_value()
                            ? *plan.thinking_budget
                            : std::clamp(max_tokens * 3 / 4, 1, std::max(1, max_tokens - 1));
  }
  a.estimated_tokens = EstimateTokens(prompt_bytes, limits.max_prompt_tokens, thinking ? 2 : 1,
                                      plan.n, max_tokens);
  return a;
}

}  // namespace conclave::server
