// What a Contemplating run is asked to do (ContemplateOptions) and the
// check that it is runnable (ValidateContemplateOptions), apart from the run
// itself (contemplation.h), so that what builds options (the server's
// request conversion, tests, fuzzers) can check them without an engine.
// Thread-safe: plain data and a pure function.
#ifndef CONCLAVE_ORCHESTRATOR_CONTEMPLATE_OPTIONS_H_
#define CONCLAVE_ORCHESTRATOR_CONTEMPLATE_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/request.h"
#include "engine/tokenizer/chat_template.h"
#include "orchestrator/answer/extract.h"
#include "orchestrator/policy/confidence_stop.h"
#include "orchestrator/policy/consensus_stop.h"

namespace conclave::orchestrator {

enum class AggregatorKind { kAuto, kMajority, kConfidence, kVerifier, kSynthesis };
const char* AggregatorName(AggregatorKind kind);

struct ContemplateOptions {
  std::vector<engine::ChatMessage> messages;  // the question
  int agents = 4;                             // [1, EngineClient::max_sequences_per_request]
  float temperature = 0.8f;                   // base; see PlanOptions
  float temperature_spread = 0.0f;
  uint64_t seed = 0;                          // agent i samples with seed + i
  // Role prompts, assigned round robin. An entry that names a built-in role
  // (BuiltinRoles: "step_by_step", "work_backwards", ...) stands for that
  // role's prompt; any other entry is the prompt itself.
  std::vector<std::string> roles;
  // Reasoning tokens per agent before its answer is forced; 0: none (the
  // agent may use all of max_tokens).
  int thinking_budget = 0;
  int max_tokens = 1024;  // generated tokens per agent, >= 2
  // Stop strings of every agent, forced answer and synthesis pass (the
  // engine's rules: engine::ValidateStopStrings).
  std::vector<std::string> stop;
  engine::SamplingParams sampling;  // top_p, top_k, min_p, penalties (temperature and seed: per agent)
  AnswerFormat answer_format = AnswerFormat::kAuto;
  AggregatorKind aggregator = AggregatorKind::kAuto;
  double confidence_eta = 90.0;  // kConfidence: percent of agents whose votes count
  std::optional<ConsensusStopOptions> consensus;    // absent: off
  std::optional<ConfidenceStopOptions> confidence;  // absent: off
  int confidence_window = 2048;  // tokens in each agent's sliding confidence mean
  int aggregator_max_tokens = 512;  // the synthesis pass
  // Longest agent prompt accepted, in tokens after the chat template (and
  // the role prompt); 0: only the model's context limits it.
  int max_prompt_tokens = 0;
  bool stream_agent_text = false;
  uint64_t cache_salt = 0;
};

// Most role prompts a run takes (they are assigned round robin).
inline constexpr int kMaxRoles = 64;

// OK when a run can start with `o` on an engine that takes up to
// `max_agents` sequences per request: messages, agents in [1, max_agents],
// max_tokens >= 2, thinking_budget in [0, max_tokens - 1], confidence_eta in
// (0, 100], confidence_window and aggregator_max_tokens >= 1, at most
// kMaxRoles roles, valid stop strings, and the sampling (with the base temperature) valid.
// INVALID_ARGUMENT naming the field otherwise. The stopping policies'
// options are checked by their own Create.
absl::Status ValidateContemplateOptions(const ContemplateOptions& o, int max_agents);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_CONTEMPLATE_OPTIONS_H_
