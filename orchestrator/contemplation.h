// Contemplating mode: N reasoning agents answer one question on the batched
// engine, online policies stop agents early, and an aggregator merges their
// answers into one.
//
//   1. Plan: N agent specs (temperature, seed, role, thinking budget).
//   2. Agents that share a prompt (all of them unless roles differ) are one
//      engine request of n sequences: the prompt is prefilled once and the
//      sequences fork from it. Role prompts go at the end of the question,
//      so differing agents still share every full block before it through
//      the prefix cache.
//   3. As agents finish, their answers are extracted (AnswerFormat) and fed
//      to the stopping policies: consensus (abort the rest once k agents
//      agree enough) and confidence (abort an agent whose sliding-window
//      confidence falls below a threshold learnt from the first agents to
//      finish). With a thinking budget, an agent that spends it without an
//      answer is asked for its answer in a short second request (budget
//      forcing), which reuses its KV blocks through the prefix cache.
//   4. Aggregation over the finished agents' answers: MAJORITY,
//      CONFIDENCE (DeepConf-style weighted vote of the most confident),
//      VERIFIER (one batched pass that asks the model whether each solution
//      is correct and reads P("Yes") from the next-token logprobs) or
//      SYNTHESIS (an aggregator request reads every solution and writes the
//      final one). kAuto: MAJORITY when some agent's answer was extracted,
//      SYNTHESIS otherwise.
// Uses only EngineClient, so it runs against an in-process or a remote
// engine alike.
#ifndef CONCLAVE_ORCHESTRATOR_CONTEMPLATION_H_
#define CONCLAVE_ORCHESTRATOR_CONTEMPLATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/request.h"
#include "engine/request_stream.h"
#include "engine/tokenizer/chat_template.h"
#include "orchestrator/aggregate/vote.h"
#include "orchestrator/answer/extract.h"
#include "orchestrator/engine_client.h"
#include "orchestrator/plan/agent_plan.h"
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

enum class StopReason { kConsensus, kLowConfidence, kCancelled };
const char* StopReasonName(StopReason reason);

// What happens during a run, in order, reported through the event sink
// (from the thread that calls Run).
struct ContemplateEvent {
  enum class Kind { kAgentStarted, kAgentText, kAgentFinished, kAgentStopped, kVerifierScores };
  Kind kind = Kind::kAgentStarted;
  int agent = -1;
  // kAgentStarted
  std::string role;  // the role prompt ("" for none)
  float temperature = 0.0f;
  uint64_t seed = 0;
  // kAgentText
  std::string text;
  // kAgentFinished
  ExtractedAnswer answer;
  double confidence = 0.0;  // the agent's lowest window confidence
  engine::FinishReason finish = engine::FinishReason::kNone;
  // kAgentFinished, kAgentStopped
  int tokens = 0;
  // kAgentStopped
  StopReason stop_reason = StopReason::kConsensus;
  // kVerifierScores: (agent, P(yes)) per judged agent
  std::vector<std::pair<int, double>> scores;
};

struct ContemplateUsage {
  int prompt_tokens = 0;         // over every engine request
  int cached_prompt_tokens = 0;  // of those, served by the prefix cache
  int agent_tokens = 0;          // generated by the agents (forced answers included)
  int aggregator_tokens = 0;     // generated by the verifier / synthesis passes
  // For every stopped agent: the finished agents' mean length minus what it
  // had generated (0 when none finished).
  int saved_tokens_estimate = 0;
  // How long the agents' first engine request waited in the engine's queue
  // before its first step (RequestUsage::queue_time).
  absl::Duration queue_time = absl::ZeroDuration();
  int generated_tokens() const { return agent_tokens + aggregator_tokens; }
};

struct AgentOutcome {
  int agent = 0;
  std::string text;
  int tokens = 0;
  bool finished = false;  // false: stopped early
  std::optional<StopReason> stopped;
  engine::FinishReason finish = engine::FinishReason::kNone;
  ExtractedAnswer answer;
  double confidence = 0.0;  // lowest window confidence
  bool forced_answer = false;  // the thinking budget ran out and the answer was asked for
};

struct ContemplateResult {
  AggregatorKind aggregator = AggregatorKind::kMajority;  // the one used
  bool has_answer = false;
  std::string answer;      // as an agent (or the synthesis) wrote it
  std::string normalized;  // what voted
  std::string text;        // kSynthesis: the synthesized solution
  std::vector<VoteTally> votes;  // most weight first
  double support = 0.0;     // winner's share of the weight, [0, 1]
  double confidence = 0.0;  // the aggregator's confidence, [0, 1]
  std::vector<AgentOutcome> agents;
  ContemplateUsage usage;
  // Wall time of the aggregation step, after the last agent ended (a vote
  // takes microseconds; the verifier and synthesis run engine passes).
  absl::Duration aggregation_time = absl::ZeroDuration();
};

class Contemplation {
 public:
  using Sink = std::function<void(const ContemplateEvent&)>;

  // `client` must outlive the run.
  explicit Contemplation(EngineClient& client) : client_(client) {}
  Contemplation(const Contemplation&) = delete;
  Contemplation& operator=(const Contemplation&) = delete;

  // Blocks until the final answer. INVALID_ARGUMENT for options out of
  // range (naming the field); CANCELLED after Cancel; otherwise what the
  // engine reports. Nothing is left running in the engine when it returns.
  absl::StatusOr<ContemplateResult> Run(const ContemplateOptions& options, const Sink& sink);

  // Aborts everything still running and makes Run return CANCELLED
  // (idempotent; any thread, any time).
  void Cancel();

  // What the last Run's engine requests used, as far as it had read their
  // streams when it returned: the result's token counts after a success,
  // and what was spent before an error or Cancel (per-key accounting).
  // Zeros before the first Run.
  ContemplateUsage usage();

 private:
  struct Agent;
  struct Stream;
  class Runner;

  EngineClient& client_;
  std::mutex mu_;  // guards cancelled_ and streams_
  bool cancelled_ = false;
  std::vector<std::shared_ptr<engine::RequestStream>> streams_;  // every stream submitted
  ContemplateUsage usage_;  // guarded by mu_; set when a Run ends

  friend class Runner;
  // Submits `request` unless cancelled (CANCELLED then), and remembers its
  // stream for Cancel.
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(engine::EngineRequest request);
  bool cancelled();
};

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_CONTEMPLATION_H_
