#include "orchestrator/thinking.h"

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace conclave::orchestrator {
namespace {

// Phase 1 stops at the marker as the instruction spells it and at the
// capitalisations small models write instead.
const std::vector<std::string>& MarkerStops() {
  static const auto* stops = new std::vector<std::string>{
      kFinalAnswerMarker, "Final Answer:", "FINAL ANSWER:"};
  return *stops;
}

void AddUsage(engine::RequestUsage& total, const engine::RequestUsage& more) {
  total.prompt_tokens += more.prompt_tokens;
  total.cached_prompt_tokens += more.cached_prompt_tokens;
  total.generated_tokens += more.generated_tokens;
  total.queue_time += more.queue_time;  // the phases wait one after the other
}

}  // namespace

const char* ThinkingEndName(ThinkingEnd end) {
  switch (end) {
    case ThinkingEnd::kMarker: return "marker";
    case ThinkingEnd::kBudget: return "budget";
    case ThinkingEnd::kModelStopped: return "model_stopped";
  }
  return "unknown";
}

std::vector<engine::ChatMessage> WithThinkingInstruction(
    std::vector<engine::ChatMessage> messages) {
  if (!messages.empty() && messages.front().role == "system") {
    std::string& content = messages.front().content;
    if (!content.empty()) content += "\n\n";
    content += kThinkingInstruction;
  } else {
    messages.insert(messages.begin(), engine::ChatMessage{"system", kThinkingInstruction});
  }
  return messages;
}

std::vector<int32_t> AnswerPrompt(const engine::Tokenizer& tokenizer,
                                  const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& thinking_tokens,
                                  const std::string& thinking_text) {
  const absl::string_view text = absl::StripTrailingAsciiWhitespace(thinking_text);
  std::vector<int32_t> out = prompt;
  size_t covered = 0;  // bytes of `text` spelled by the kept tokens
  for (int32_t id : thinking_tokens) {
    const std::string piece = tokenizer.TokenPiece(id);
    if (piece.empty() || text.substr(covered, piece.size()) != piece) break;
    out.push_back(id);
    covered += piece.size();
  }
  const std::string rest = absl::StrCat(text.substr(covered), kAnswerCue);
  const std::vector<int32_t> tail =
      tokenizer.Encode(rest, /*add_special=*/false, /*parse_special=*/false);
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

absl::StatusOr<ThinkingResult> ThinkingGenerator::Run(const ThinkingRequest& request,
                                                      const Sink& sink) {
  if (request.max_tokens < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens=", request.max_tokens, " must be >= 2 in thinking mode"));
  }
  if (request.thinking_budget < 1 || request.thinking_budget > request.max_tokens - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("thinking_budget=", request.thinking_budget, " must be in [1, max_tokens - 1 = ",
                     request.max_tokens - 1, "]"));
  }

  engine::EngineRequest think;
  think.prompt = request.prompt;
  think.sampling = {request.sampling};
  think.max_tokens = request.thinking_budget;
  think.stop = MarkerStops();
  think.cache_salt = request.cache_salt;
  absl::StatusOr<PhaseOutput> thought =
      RunPhase(std::move(think), ThinkingSegment::kThinking, sink);
  if (!thought.ok()) return thought.status();

  ThinkingResult result;
  result.thinking_tokens = static_cast<int>(thought->tokens.size());
  AddUsage(result.usage, thought->usage);
  switch (thought->finish) {
    case engine::FinishReason::kStopString:
      result.thinking_end = ThinkingEnd::kMarker;
      break;
    case engine::FinishReason::kStopToken:
      result.thinking_end = ThinkingEnd::kModelStopped;
      break;
    case engine::FinishReason::kLength:
      result.thinking_end = ThinkingEnd::kBudget;
      break;
    default:  // kAborted (cancelled); kError comes back as a status
      result.finish = engine::FinishReason::kAborted;
      return result;
  }

  engine::EngineRequest answer;
  answer.prompt = AnswerPrompt(client_.tokenizer(), request.prompt, thought->tokens, thought->text);
  answer.sampling = {request.sampling};
  answer.max_tokens = request.max_tokens - result.thinking_tokens;
  answer.stop = request.stop;
  answer.cache_salt = request.cache_salt;
  answer.continuation = true;  // the engine admitted this call with its thinking phase
  absl::StatusOr<PhaseOutput> answered =
      RunPhase(std::move(answer), ThinkingSegment::kAnswer, sink);
  if (!answered.ok()) return answered.status();
  result.finish = answered->finish;
  result.answer_tokens = static_cast<int>(answered->tokens.size());
  AddUsage(result.usage, answered->usage);
  return result;
}

void ThinkingGenerator::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (stream_ != nullptr) stream_->Cancel();
}

absl::StatusOr<ThinkingGenerator::PhaseOutput> ThinkingGenerator::RunPhase(
    engine::EngineRequest request, ThinkingSegment segment, const Sink& sink) {
  PhaseOutput out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) {
      out.finish = engine::FinishReason::kAborted;
      return out;
    }
  }
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> submitted =
      client_.Submit(std::move(request));
  if (!submitted.ok()) return submitted.status();
  std::shared_ptr<engine::RequestStream> stream = *std::move(submitted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_ = stream;
    // A Cancel between the check above and now found no stream to cancel.
    if (cancelled_) stream->Cancel();
  }

  absl::Status status;
  engine::RequestUpdate update;
  while (stream->Next(update) == engine::RequestStream::Poll::kUpdate) {
    for (const engine::SequenceDelta& d : update.deltas) {
      for (const engine::TokenOutput& t : d.tokens) out.tokens.push_back(t.id);
      out.text += d.text;
      if (d.finish != engine::FinishReason::kNone) out.finish = d.finish;
      sink(segment, d);
    }
    out.usage = update.usage;
    if (update.done) {
      status = update.status;
      break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_.reset();
  }
  if (!status.ok()) return status;
  if (out.finish == engine::FinishReason::kNone || out.finish == engine::FinishReason::kError) {
    return absl::InternalError(absl::StrCat("engine request ", stream->id(),
                                            " ended without a finish reason"));
  }
  return out;
}

}  // namespace conclave::orchestrator
