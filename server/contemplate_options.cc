#include "server/contemplate_options.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace conclave::server {
namespace {

using orchestrator::AggregatorKind;
using orchestrator::AnswerFormat;

AggregatorKind FromProto(v1::Aggregator a) {
  switch (a) {
    case v1::AGGREGATOR_MAJORITY: return AggregatorKind::kMajority;
    case v1::AGGREGATOR_CONFIDENCE: return AggregatorKind::kConfidence;
    case v1::AGGREGATOR_VERIFIER: return AggregatorKind::kVerifier;
    case v1::AGGREGATOR_SYNTHESIS: return AggregatorKind::kSynthesis;
    default: return AggregatorKind::kAuto;
  }
}

AnswerFormat FromProto(v1::AnswerFormat f) {
  switch (f) {
    case v1::ANSWER_FORMAT_GSM8K: return AnswerFormat::kGsm8k;
    case v1::ANSWER_FORMAT_BOXED: return AnswerFormat::kBoxed;
    case v1::ANSWER_FORMAT_ANSWER_LINE: return AnswerFormat::kAnswerLine;
    case v1::ANSWER_FORMAT_MULTIPLE_CHOICE: return AnswerFormat::kMultipleChoice;
    case v1::ANSWER_FORMAT_NUMBER: return AnswerFormat::kNumber;
    default: return AnswerFormat::kAuto;
  }
}

}  // namespace

absl::StatusOr<orchestrator::ContemplateOptions> ToContemplateOptions(
    const v1::ContemplateRequest& request, const RequestLimits& limits, uint64_t seed) {
  orchestrator::ContemplateOptions o;
  absl::StatusOr<std::vector<engine::ChatMessage>> messages =
      ValidateMessages(request.messages(), "messages");
  if (!messages.ok()) return messages.status();
  o.messages = *std::move(messages);
  o.agents = request.has_agents() ? request.agents()
                                  : std::min(kDefaultContemplateAgents, limits.max_agents);
  o.temperature = request.has_temperature() ? request.temperature() : kDefaultTemperature;
  o.temperature_spread = request.has_temperature_spread() ? request.temperature_spread() : 0.0f;
  // The lowest temperature is clamped at 0 by narrowing the spread.
  o.temperature_spread = std::min(o.temperature_spread, 2.0f * o.temperature);
  o.seed = request.has_seed() ? request.seed() : seed;
  o.roles.assign(request.roles().begin(), request.roles().end());
  o.stop.assign(request.stop().begin(), request.stop().end());
  o.max_tokens = request.has_max_tokens()
                     ? request.max_tokens()
                     : std::min(kDefaultContemplateMaxTokens, limits.max_tokens_limit);
  o.thinking_budget =
      request.has_thinking_budget() ? request.thinking_budget() : o.max_tokens * 3 / 4;
  o.sampling.top_p = kDefaultTopP;
  o.answer_format = FromProto(request.answer_format());
  o.aggregator = FromProto(request.aggregator());
  o.confidence_eta =
      request.has_confidence_eta() ? request.confidence_eta() : kDefaultConfidenceEta;
  o.stream_agent_text = request.stream_agent_text();
  o.max_prompt_tokens = limits.max_prompt_tokens;
  const v1::ConsensusStopping& consensus = request.stopping().consensus();
  if (consensus.enabled()) {
    o.consensus = orchestrator::ConsensusStopOptions{
        consensus.has_min_finished() ? consensus.min_finished() : (o.agents + 1) / 2,
        consensus.has_vote_share() ? consensus.vote_share() : kDefaultVoteShare};
  }
  const v1::ConfidenceStopping& confidence = request.stopping().confidence();
  // The sliding window defaults to an eighth of the agents' budget (at least
  // 16 tokens): DeepConf's 2048 suits traces of tens of thousands of tokens.
  o.confidence_window =
      confidence.has_window() ? confidence.window() : std::clamp(o.max_tokens / 8, 16, 2048);
  if (confidence.enabled()) {
    orchestrator::ConfidenceStopOptions c;
    c.warmup =
        confidence.has_warmup_agents() ? confidence.warmup_agents() : std::max(1, o.agents / 4);
    c.keep_top_percent =
        confidence.has_keep_top_percent() ? confidence.keep_top_percent() : kDefaultKeepTopPercent;
    c.min_tokens = o.confidence_window;  // judge an agent once its window is full
    o.confidence = c;
  }
  return o;
}

}  // namespace conclave::server
