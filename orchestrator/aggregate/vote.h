// Voting aggregators: merge the normalised answers of a request's agents into
// one answer, by plain majority, by DeepConf's confidence-filtered,
// confidence-weighted vote (Fu et al. 2025, "Deep Think with Confidence"), or
// by caller-given weights (verifier scores).
//
// Both are deterministic and independent of the order of the candidates:
// votes are summed in agent order, and every tie has a rule below.
// Candidates without an answer abstain: they never win and add nothing to any
// weight (the caller knows how many agents ran; `votes` below tells how many
// answered). Agent indices are expected to be distinct.
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_AGGREGATE_VOTE_H_
#define CONCLAVE_ORCHESTRATOR_AGGREGATE_VOTE_H_

#include <string>
#include <vector>

#include "absl/types/span.h"

namespace conclave::orchestrator {

// One agent's finished answer.
struct Candidate {
  int agent = 0;  // the agent's index in its plan
  bool has_answer = false;
  std::string answer;  // normalised (NormalizeAnswer / ExtractedAnswer::normalized)
  // Higher = more confident; finite (CHECKed by ConfidenceVote and
  // WeightedVote, which also needs it >= 0). The caller
  // picks the measure, e.g. DeepConf's lowest group confidence (the lowest
  // sliding-window mean of -mean(top-k logprobs)). MajorityVote only uses it
  // to choose the representative agent.
  double confidence = 0.0;
  int tokens = 0;  // generated tokens (informational)
};

// The votes one answer received.
struct VoteTally {
  std::string answer;
  double weight = 0.0;      // MajorityVote: = votes; ConfidenceVote: sum of weights
  int votes = 0;            // counted candidates with this answer
  std::vector<int> agents;  // their agent indices, ascending
};

struct VoteResult {
  bool has_answer = false;  // false when no counted candidate had an answer
  std::string answer;       // the winner's answer ("" without one)
  // The winner's voter to show as the answer's solution: its most confident
  // agent (ties: the lowest index); -1 without an answer.
  int representative_agent = -1;
  // Winner weight / total weight of the tally, in [0, 1]; 0 without an answer.
  double support = 0.0;
  // Every answer that received a counted vote, by weight descending, ties by
  // the lowest agent index among its voters. tally[0] is the winner.
  std::vector<VoteTally> tally;
};

// One vote per candidate with an answer. The most votes win; a tie goes to
// the answer whose lowest-indexed voter has the lowest agent index (the
// answer the first agent of the plan, among the tied, gave).
VoteResult MajorityVote(absl::Span<const Candidate> candidates);

// DeepConf offline voting. Keep the top `keep_top_percent` percent (eta, in
// (0, 100], CHECKed) of the candidates that have an answer, ranked by
// confidence descending (ties: the lower agent index first): ceil(eta/100 *
// answered) of them, at least 1 (the product is taken with a 1e-9 slack so
// that 90% of 10 keeps 9, not 10 through rounding). Each kept candidate votes
// with weight = confidence when every kept confidence is > 0 (DeepConf's
// confidences, -mean logprobs, are); otherwise every kept weight is shifted
// by the same amount, 1 - (lowest kept confidence), so the least confident
// kept vote weighs exactly 1 and the differences between votes are kept.
// Highest summed weight wins; ties as in MajorityVote. Weights are summed in
// ascending agent order, so equal inputs in any order give equal sums.
VoteResult ConfidenceVote(absl::Span<const Candidate> candidates, double keep_top_percent);

// Every candidate with an answer votes with weight = its confidence as given,
// which must be finite and >= 0 (CHECKed): e.g. a verifier's P(Yes) for its
// solution. No filtering and no shift; a zero weight still counts in
// `votes` and `agents` but adds nothing. Highest summed weight wins; ties as
// in MajorityVote (so with all weights 0 the lowest agent's answer wins, with
// support 0).
VoteResult WeightedVote(absl::Span<const Candidate> candidates);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_AGGREGATE_VOTE_H_
