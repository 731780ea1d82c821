// Thinking mode by budget forcing, for models without native thinking tokens
// (SmolLM2, Gemma 3): a system instruction asks the model to reason step by
// step and then write its answer after "Final answer:".
//
//   phase 1  the prompt, generating at most `thinking_budget` tokens, with
//            the marker as a stop string. The text is the thinking segment.
//   phase 2  a new request: the phase-1 prompt + the thinking tokens +
//            "\n\nFinal answer:", generating at most max_tokens minus what
//            phase 1 generated. The text is the answer segment.
// Phase 2 always runs (whether the model wrote the marker, ran out of budget
// or ended its turn), so every response has an answer. Its prompt repeats
// phase 1's token ids up to where the thinking text ends, so the engine's
// prefix cache serves all of its full blocks again.
//
// Uses only EngineClient, so it runs against an in-process engine or a
// remote one alike.
#ifndef CONCLAVE_ORCHESTRATOR_THINKING_H_
#define CONCLAVE_ORCHESTRATOR_THINKING_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/request.h"
#include "engine/request_stream.h"
#include "engine/tokenizer/chat_template.h"
#include "orchestrator/engine_client.h"

namespace conclave::orchestrator {

// What the model is told to write between its reasoning and its answer.
inline constexpr char kFinalAnswerMarker[] = "Final answer:";
// What phase 2 appends to the thinking text before the answer.
inline constexpr char kAnswerCue[] = "\n\nFinal answer:";
// The system instruction of thinking mode.
inline constexpr char kThinkingInstruction[] =
    "Before answering, think through the problem step by step. When you have "
    "finished reasoning, write \"Final answer:\" followed by your answer.";

// `messages` with the thinking instruction: appended (after a blank line) to
// a leading system message, or inserted as a new first system message.
std::vector<engine::ChatMessage> WithThinkingInstruction(
    std::vector<engine::ChatMessage> messages);

struct ThinkingRequest {
  // The chat prompt, rendered from WithThinkingInstruction(messages) with the
  // generation prompt, as token ids.
  std::vector<int32_t> prompt;
  engine::SamplingParams sampling;  // both phases
  int max_tokens = 1024;            // thinking + answer, >= 2
  int thinking_budget = 768;        // [1, max_tokens - 1]
  std::vector<std::string> stop;    // answer phase only
  uint64_t cache_salt = 0;
};

enum class ThinkingSegment { kThinking, kAnswer };

// How phase 1 ended.
enum class ThinkingEnd {
  kMarker,        // the model wrote kFinalAnswerMarker
  kBudget,        // thinking_budget tokens were generated
  kModelStopped,  // the model ended its turn (end-of-generation token)
};
const char* ThinkingEndName(ThinkingEnd end);

struct ThinkingResult {
  // Why the answer ended; kAborted when cancelled (also during phase 1, in
  // which case phase 2 never ran).
  engine::FinishReason finish = engine::FinishReason::kNone;
  ThinkingEnd thinking_end = ThinkingEnd::kBudget;
  int thinking_tokens = 0;
  int answer_tokens = 0;
  // Summed over the (one or two) engine requests (queue_time too: the
  // phases run one after the other).
  engine::RequestUsage usage;
};

// Runs one thinking-mode generation. Run is called once, on a thread that
// may block; Cancel may be called from any thread, before, during or after
// Run.
class ThinkingGenerator {
 public:
  // Each delta of either phase, in order, with the segment it belongs to.
  using Sink = std::function<void(ThinkingSegment, const engine::SequenceDelta&)>;

  // `client` must outlive the generator.
  explicit ThinkingGenerator(EngineClient& client) : client_(client) {}
  ThinkingGenerator(const ThinkingGenerator&) = delete;
  ThinkingGenerator& operator=(const ThinkingGenerator&) = delete;

  // Blocks until the answer ends. Errors: INVALID_ARGUMENT for budgets out
  // of range, and whatever EngineClient::Submit or the engine reports
  // (nothing is left running on error).
  absl::StatusOr<ThinkingResult> Run(const ThinkingRequest& request, const Sink& sink);

  // Aborts the running phase and skips any later one (idempotent).
  void Cancel();

 private:
  struct PhaseOutput {
    std::vector<int32_t> tokens;
    std::string text;
    engine::FinishReason finish = engine::FinishReason::kNone;
    engine::RequestUsage usage;
  };

  // Submits `request` and streams it to `sink` as `segment`. CANCELLED
  // (nothing submitted) when Cancel came first.
  absl::StatusOr<PhaseOutput> RunPhase(engine::EngineRequest request, ThinkingSegment segment,
                                       const Sink& sink);

  EngineClient& client_;
  std::mutex mu_;  // guards cancelled_ and stream_
  bool cancelled_ = false;
  std::shared_ptr<engine::RequestStream> stream_;  // the running phase's
};

// The phase-2 prompt: `prompt`, then the longest prefix of `thinking_tokens`
// whose pieces spell a prefix of `thinking_text` with trailing whitespace
// removed (so those ids, and their cached KV blocks, are reused as they
// are), then the rest of that text and kAnswerCue, encoded. Exposed for
// tests.
std::vector<int32_t> AnswerPrompt(const engine::Tokenizer& tokenizer,
                                  const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& thinking_tokens,
                                  const std::string& thinking_text);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_THINKING_H_
