#include "orchestrator/policy/consensus_stop.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace conclave::orchestrator {
namespace {

// Slack on the share comparison: 0.6 * 5 must reach 3.
constexpr double kShareSlack = 1e-9;

}  // namespace

absl::StatusOr<ConsensusStop> ConsensusStop::Create(const ConsensusStopOptions& options) {
  if (options.min_finished < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("consensus min_finished=%d must be >= 1", options.min_finished));
  }
  if (!(options.threshold > 0.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("consensus threshold=%g must be in (0, 1]", options.threshold));
  }
  return ConsensusStop(options);
}

void ConsensusStop::OnAgentFinished(int agent, bool has_answer, std::string_view normalized) {
  if (!seen_.insert(agent).second) return;
  ++finished_;
  if (!has_answer) return;
  auto [it, inserted] = votes_.try_emplace(std::string(normalized));
  Votes& v = it->second;
  v.lowest_agent = inserted ? agent : std::min(v.lowest_agent, agent);
  ++v.count;
  // A new answer or a new vote can change the leader; a lower voter index on
  // the current leader's rival can too, so compare with the tie rule.
  const bool leads = leader_votes_ == 0 || v.count > leader_votes_ ||
                     (v.count == leader_votes_ && v.lowest_agent < leader_lowest_agent_);
  if (it->first == leader_) {
    leader_votes_ = v.count;
    leader_lowest_agent_ = v.lowest_agent;
  } else if (leads) {
    leader_ = it->first;
    leader_votes_ = v.count;
    leader_lowest_agent_ = v.lowest_agent;
  }
}

bool ConsensusStop::ShouldStop() const {
  if (finished_ < options_.min_finished || leader_votes_ == 0) return false;
  return leader_votes_ >= options_.threshold * finished_ - kShareSlack;
}

double ConsensusStop::leading_share() const {
  return finished_ == 0 ? 0.0 : static_cast<double>(leader_votes_) / finished_;
}

}  // namespace conclave::orchestrator
