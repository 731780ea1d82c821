// Online consensus stop: while a request's agents run, decide from the
// answers of those that already finished whether the rest can be aborted
// because the finished ones agree enough.
//
// Rule: stop once at least `min_finished` agents have finished and the
// leading answer holds at least `threshold` of the finished agents' votes.
// Finished agents WITHOUT an answer count in the denominator (they are votes
// for "no answer"), so 3 agreeing answers out of 4 finished agents, one of
// them answerless, are a share of 0.75, not 1. The share is compared with a
// 1e-9 slack, so threshold 0.6 with 3 of 5 stops despite rounding.
// Leader: the answer with the most votes; ties go to the answer whose
// lowest-indexed voter has the lowest agent index (MajorityVote's rule, so the
// leader is what MajorityVote over the finished agents would pick).
// Not thread-safe: one per request, fed by the code consuming its stream.
#ifndef CONCLAVE_ORCHESTRATOR_POLICY_CONSENSUS_STOP_H_
#define CONCLAVE_ORCHESTRATOR_POLICY_CONSENSUS_STOP_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace conclave::orchestrator {

struct ConsensusStopOptions {
  int min_finished = 1;    // k >= 1: finished agents needed before stopping
  double threshold = 0.5;  // tau in (0, 1]: leading answer's share needed
};

class ConsensusStop {
 public:
  // INVALID_ARGUMENT naming the field and its range when min_finished < 1 or
  // threshold is not in (0, 1] (NaN included).
  static absl::StatusOr<ConsensusStop> Create(const ConsensusStopOptions& options);

  // Records that `agent` finished, with its normalised answer (ignored when
  // !has_answer). A second report for the same agent is ignored.
  void OnAgentFinished(int agent, bool has_answer, std::string_view normalized);

  // True once finished() >= min_finished and leading_share() >= threshold
  // (up to the 1e-9 slack). Stays true as later agents finish only if the
  // rule still holds; callers act on the first true.
  bool ShouldStop() const;

  int finished() const { return finished_; }
  // Whether some finished agent had an answer.
  bool has_leader() const { return leader_votes_ > 0; }
  // The leading answer; "" without one.
  const std::string& leading_answer() const { return leader_; }
  // Its votes.
  int leading_votes() const { return leader_votes_; }
  // leading_votes() / finished(); 0 before anyone finished.
  double leading_share() const;

  const ConsensusStopOptions& options() const { return options_; }

 private:
  struct Votes {
    int count = 0;
    int lowest_agent = 0;  // lowest agent index among the voters
  };

  explicit ConsensusStop(const ConsensusStopOptions& options) : options_(options) {}

  ConsensusStopOptions options_;
  absl::flat_hash_set<int> seen_;                 // agents that reported
  absl::flat_hash_map<std::string, Votes> votes_;  // answer -> its votes
  int finished_ = 0;
  std::string leader_;
  int leader_votes_ = 0;
  int leader_lowest_agent_ = 0;
};

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_POLICY_CONSENSUS_STOP_H_
