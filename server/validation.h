// Validation of public API requests: a proto request becomes the server's
// plan, or INVALID_ARGUMENT with a message that names the field, its value
// and its limit ("sampling.top_p=0 must be in (0, 1]"). Checks that need
// the prompt's token count (ResolveTokenBudget) run after templating.
// Thread-safe: pure functions.
#ifndef CONCLAVE_SERVER_VALIDATION_H_
#define CONCLAVE_SERVER_VALIDATION_H_

#include <cstddef>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "conclave/v1/conclave.pb.h"
#include "engine/sampling/sampler.h"
#include "engine/tokenizer/chat_template.h"

namespace conclave::server {

// What the server allows; filled from the model and the command line.
struct RequestLimits {
  std::string model_id;       // the served model's ModelInfo.id
  int context_length = 0;     // positions per sequence
  int vocab_size = 0;         // upper bound of top_k
  int max_prompt_tokens = 0;  // prompt tokens after the chat template
  int max_tokens_limit = 0;   // the largest max_tokens a request may ask for
  int max_agents = 8;         // Contemplate agents per request
};

// Defaults of absent fields (documented in conclave.proto).
inline constexpr float kDefaultTemperature = 0.8f;
inline constexpr float kDefaultTopP = 0.95f;
inline constexpr int kDefaultInstantMaxTokens = 512;
inline constexpr int kDefaultThinkingMaxTokens = 1024;
inline constexpr int kDefaultContemplateAgents = 4;
// Room left in the context for what thinking mode adds to its second
// prompt (the answer cue, and re-encoding the end of the thinking text).
inline constexpr int kThinkingReserveTokens = 16;

enum class GenerateMode { kInstant, kThinking };
const char* GenerateModeName(GenerateMode mode);

struct GeneratePlan {
  GenerateMode mode = GenerateMode::kInstant;
  std::vector<engine::ChatMessage> messages;  // empty when raw_prompt is set
  std::optional<std::string> raw_prompt;
  engine::SamplingParams sampling;  // sampling.seed is meaningful only if seed_given
  bool seed_given = false;
  std::optional<int> max_tokens;       // as requested
  std::optional<int> thinking_budget;  // as requested (thinking mode)
  std::vector<std::string> stop;
  // Sequences sampled from the prompt (MODE_INSTANT only): sequence i draws
  // with seed + i. The gRPC API always asks for one; the HTTP endpoint's
  // `n` sets it, within RequestLimits::max_agents.
  int n = 1;
};

absl::StatusOr<GeneratePlan> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                     const RequestLimits& limits);

// ContemplateRequest.max_tokens when absent (conclave.proto), before it is
// lowered to --max-tokens-limit: validation checks thinking_budget against
// it and ToContemplateOptions gives it to the agents.
inline constexpr int kDefaultContemplateMaxTokens = 1024;

// Validates every field of a Contemplate request (agents in [1, max_agents],
// sampling, budgets, stopping policy, enums) without running anything.
absl::Status ValidateContemplateRequest(const v1::ContemplateRequest& request,
                                        const RequestLimits& limits);

// Checks and converts a conversation: non-empty, known roles (the enum, or
// role_name "system" / "user" / "assistant" / "model"), UTF-8 contents.
// `field` prefixes the messages ("messages[2].role: ...").
absl::StatusOr<std::vector<engine::ChatMessage>> ValidateMessages(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages,
    absl::string_view field);

// "" or the served model's id; else INVALID_ARGUMENT naming what is served.
absl::Status ValidateModel(const std::string& model, const RequestLimits& limits);

struct TokenBudget {
  int max_tokens = 0;
  int thinking_budget = 0;  // thinking mode only
};

// After the prompt is encoded: INVALID_ARGUMENT when it exceeds
// max_prompt_tokens or leaves the request too little of the context; else
// max_tokens and thinking_budget with their defaults applied.
absl::StatusOr<TokenBudget> ResolveTokenBudget(const GeneratePlan& plan, int prompt_tokens,
                                               const RequestLimits& limits);

// Byte offset of the first byte of `s` that is not part of well-formed
// UTF-8 (overlong forms, surrogates and code points above U+10FFFF are
// ill-formed), or absl::string_view::npos when all of it is.
size_t FindInvalidUtf8(absl::string_view s);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_VALIDATION_H_
