#include "orchestrator/contemplate_options.h"

#include <cstddef>

#include "absl/strings/str_cat.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/stop_checker.h"

namespace conclave::orchestrator {

const char* AggregatorName(AggregatorKind kind) {
  switch (kind) {
    case AggregatorKind::kAuto: return "auto";
    case AggregatorKind::kMajority: return "majority";
    case AggregatorKind::kConfidence: return "confidence";
    case AggregatorKind::kVerifier: return "verifier";
    case AggregatorKind::kSynthesis: return "synthesis";
  }
  return "unknown";
}

absl::Status ValidateContemplateOptions(const ContemplateOptions& o, int max_agents) {
  if (o.messages.empty()) return absl::InvalidArgumentError("messages must not be empty");
  if (o.agents < 1 || o.agents > max_agents) {
    return absl::InvalidArgumentError(
        absl::StrCat("agents=", o.agents, " must be in [1, ", max_agents, "]"));
  }
  if (o.max_tokens < 2) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens=", o.max_tokens, " must be >= 2"));
  }
  if (o.thinking_budget < 0 || o.thinking_budget >= o.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("thinking_budget=", o.thinking_budget,
                                                   " must be in [0, max_tokens - 1 = ",
                                                   o.max_tokens - 1, "]"));
  }
  if (!(o.confidence_eta > 0.0 && o.confidence_eta <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("confidence_eta=", o.confidence_eta, " must be in (0, 100]"));
  }
  if (o.confidence_window < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("confidence_window=", o.confidence_window, " must be >= 1"));
  }
  if (o.aggregator_max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregator_max_tokens=", o.aggregator_max_tokens, " must be >= 1"));
  }
  if (o.roles.size() > static_cast<size_t>(kMaxRoles)) {
    return absl::InvalidArgumentError(absl::StrCat("roles has ", o.roles.size(),
                                                   " entries; at most ", kMaxRoles));
  }
  if (absl::Status st = engine::ValidateStopStrings(o.stop); !st.ok()) return st;
  engine::SamplingParams s = o.sampling;
  s.temperature = o.temperature;
  return engine::ValidateSamplingParams(s);
}

}  // namespace conclave::orchestrator
