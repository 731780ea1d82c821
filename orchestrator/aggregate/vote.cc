#include "orchestrator/aggregate/vote.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kernels/check.h"

namespace conclave::orchestrator {
namespace {

// A counted vote.
struct Vote {
  const Candidate* candidate;
  double weight;
};

// A total order on candidates that does not depend on their input order
// (agent first; the rest only matters for duplicated agent indices).
bool AgentOrder(const Candidate* a, const Candidate* b) {
  return std::tie(a->agent, a->answer, a->confidence, a->tokens) <
         std::tie(b->agent, b->answer, b->confidence, b->tokens);
}

// Most confident first, ties by the lower agent index.
bool ConfidenceOrder(const Candidate* a, const Candidate* b) {
  if (a->confidence != b->confidence) return a->confidence > b->confidence;
  return AgentOrder(a, b);
}

VoteResult Tally(std::vector<Vote> votes) {
  VoteResult result;
  if (votes.empty()) return result;
  std::sort(votes.begin(), votes.end(), [](const Vote& a, const Vote& b) {
    return AgentOrder(a.candidate, b.candidate);
  });

  absl::flat_hash_map<std::string, size_t> index;  // answer -> tally slot
  std::vector<const Candidate*> representative;     // per slot
  std::vector<VoteTally>& tally = result.tally;
  double total = 0.0;
  for (const Vote& vote : votes) {
    const Candidate& c = *vote.candidate;
    auto [it, inserted] = index.try_emplace(c.answer, tally.size());
    if (inserted) {
      tally.push_back(VoteTally{c.answer, 0.0, 0, {}});
      representative.push_back(&c);
    }
    VoteTally& t = tally[it->second];
    t.weight += vote.weight;
    t.votes += 1;
    t.agents.push_back(c.agent);  // ascending: votes are in agent order
    if (ConfidenceOrder(&c, representative[it->second])) representative[it->second] = &c;
    total += vote.weight;
  }

  // Slots were created in agent order, so slot order is the tie rule.
  std::vector<size_t> order(tally.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tally[a].weight > tally[b].weight;
  });
  std::vector<VoteTally> sorted;
  sorted.reserve(tally.size());
  for (size_t i : order) sorted.push_back(std::move(tally[i]));
  const Candidate* winner = representative[order[0]];
  tally = std::move(sorted);

  result.has_answer = true;
  result.answer = tally[0].answer;
  result.representative_agent = winner->agent;
  result.support = total > 0.0 ? std::min(1.0, tally[0].weight / total) : 0.0;
  return result;
}

}  // namespace

VoteResult MajorityVote(absl::Span<const Candidate> candidates) {
  std::vector<Vote> votes;
  for (const Candidate& c : candidates) {
    if (c.has_answer) votes.push_back(Vote{&c, 1.0});
  }
  return Tally(std::move(votes));
}

VoteResult ConfidenceVote(absl::Span<const Candidate> candidates, double keep_top_percent) {
  CHECK(keep_top_percent > 0.0 && keep_top_percent <= 100.0)
      << "keep_top_percent=" << keep_top_percent << " must be in (0, 100]";
  std::vector<const Candidate*> answered;
  for (const Candidate& c : candidates) {
    CHECK(std::isfinite(c.confidence)) << "agent " << c.agent << " confidence " << c.confidence;
    if (c.has_answer) answered.push_back(&c);
  }
  if (answered.empty()) return VoteResult{};

  const double wanted = std::ceil(answered.size() * keep_top_percent / 100.0 - 1e-9);
  const size_t keep = std::clamp<size_t>(static_cast<size_t>(std::max(wanted, 1.0)), 1,
                                         answered.size());
  std::sort(answered.begin(), answered.end(), ConfidenceOrder);
  answered.resize(keep);

  const double lowest = answered.back()->confidence;  // sorted descending
  const double shift = lowest > 0.0 ? 0.0 : 1.0 - lowest;
  std::vector<Vote> votes;
  votes.reserve(answered.size());
  for (const Candidate* c : answered) votes.push_back(Vote{c, c->confidence + shift});
  return Tally(std::move(votes));
}

VoteResult WeightedVote(absl::Span<const Candidate> candidates) {
  std::vector<Vote> votes;
  for (const Candidate& c : candidates) {
    CHECK(std::isfinite(c.confidence) && c.confidence >= 0.0)
        << "agent " << c.agent << " vote weight (confidence) " << c.confidence;
    if (c.has_answer) votes.push_back(Vote{&c, c.confidence});
  }
  return Tally(std::move(votes));
}

}  // namespace conclave::orchestrator
