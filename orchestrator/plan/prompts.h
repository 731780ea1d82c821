// The chat messages conclave sends for each kind of engine request in
// Contemplating mode: an agent's attempt, a verifier's Yes/No judgement, a
// Mixture-of-Agents synthesis of candidate solutions, and the thinking prompt
// used with budget forcing. The results go through
// engine::ApplyChatTemplate, which accepts a leading system message in every
// format (Gemma 3 folds it into the first user turn).
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_PLAN_PROMPTS_H_
#define CONCLAVE_ORCHESTRATOR_PLAN_PROMPTS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/chat_template.h"
#include "orchestrator/answer/extract.h"
#include "orchestrator/plan/agent_plan.h"

namespace conclave::orchestrator {

// Characters of each candidate kept by SynthesisMessages by default (about
// 1,000 tokens of English), so that 8 candidates fit a 16k context.
inline constexpr size_t kDefaultSynthesisCandidateChars = 4000;

// The sentence telling an agent how to state its final answer, e.g. for
// kGsm8k: 'End your response with a final line of the form "#### <number>",
// where <number> is the final numeric answer only.' kAuto asks for an
// "Answer: <answer>" line, as kAnswerLine does.
std::string AnswerInstruction(AnswerFormat format);

// `question` (the request's messages, in order) with a system instruction
// for `agent`: reason step by step, then AnswerInstruction(format), then the
// agent's role prompt when it has one. When `question` starts with a system
// message, the instruction is appended to it after a blank line; otherwise a
// new system message is put first.
std::vector<engine::ChatMessage> AgentMessages(const std::vector<engine::ChatMessage>& question,
                                               const AgentSpec& agent, AnswerFormat format);

// A system message casting the model as a careful verifier and one user
// message holding the question, the candidate solution and, last, "Is this
// solution correct? Answer Yes or No.", so that the first generated token is
// "Yes" or "No" (read with VerifierYesProbability).
std::vector<engine::ChatMessage> VerifierMessages(std::string_view question,
                                                  std::string_view solution);

// A Mixture-of-Agents aggregation prompt (Wang et al. 2024): the system
// message asks to read the candidate solutions, evaluate them critically
// (some may be wrong), and write one final solution ending as
// AnswerInstruction(format) says; the user message holds the question and
// the candidates numbered "Solution 1", "Solution 2", ... Each candidate
// longer than `max_chars_per_candidate` (>= 64, CHECKed) keeps its first
// and last max/2 bytes, cut at UTF-8 character boundaries, joined by
// "\n[... N characters omitted ...]\n": the head shows the approach, the
// tail the final answer.
std::vector<engine::ChatMessage> SynthesisMessages(
    std::string_view question, const std::vector<std::string>& candidates,
    AnswerFormat format, size_t max_chars_per_candidate = kDefaultSynthesisCandidateChars);

// `text` shortened as SynthesisMessages does (unchanged when it fits).
std::string TruncateMiddle(std::string_view text, size_t max_chars);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_PLAN_PROMPTS_H_
