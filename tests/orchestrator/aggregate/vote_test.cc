#include "orchestrator/aggregate/vote.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::ElementsAre;

Candidate Answer(int agent, std::string answer, double confidence = 0.0) {
  return Candidate{agent, true, std::move(answer), confidence, 100};
}
Candidate NoAnswer(int agent, double confidence = 0.0) {
  return Candidate{agent, false, "", confidence, 100};
}

// Every permutation-like shuffle of `candidates` must give `expected`.
template <typename Vote>
void ExpectOrderIndependent(std::vector<Candidate> candidates, Vote vote) {
  const VoteResult expected = vote(candidates);
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(candidates.begin(), candidates.end(), rng);
    const VoteResult got = vote(candidates);
    EXPECT_EQ(got.has_answer, expected.has_answer);
    EXPECT_EQ(got.answer, expected.answer);
    EXPECT_EQ(got.representative_agent, expected.representative_agent);
    EXPECT_EQ(got.support, expected.support);  // bit-exact: summed in agent order
    ASSERT_EQ(got.tally.size(), expected.tally.size());
    for (size_t i = 0; i < got.tally.size(); ++i) {
      EXPECT_EQ(got.tally[i].answer, expected.tally[i].answer);
      EXPECT_EQ(got.tally[i].weight, expected.tally[i].weight);
      EXPECT_EQ(got.tally[i].agents, expected.tally[i].agents);
    }
  }
}

TEST(MajorityVoteTest, MostVotesWin) {
  const std::vector<Candidate> c = {Answer(0, "18"), Answer(1, "20"), Answer(2, "18"),
                                    Answer(3, "18"), Answer(4, "20")};
  const VoteResult r = MajorityVote(c);
  EXPECT_TRUE(r.has_answer);
  EXPECT_EQ(r.answer, "18");
  EXPECT_DOUBLE_EQ(r.support, 0.6);
  ASSERT_EQ(r.tally.size(), 2u);
  EXPECT_EQ(r.tally[0].answer, "18");
  EXPECT_EQ(r.tally[0].votes, 3);
  EXPECT_EQ(r.tally[0].weight, 3.0);
  EXPECT_THAT(r.tally[0].agents, ElementsAre(0, 2, 3));
  EXPECT_EQ(r.tally[1].answer, "20");
  EXPECT_THAT(r.tally[1].agents, ElementsAre(1, 4));
}

TEST(MajorityVoteTest, TieGoesToTheAnswerOfTheLowestAgent) {
  // "7" has agents {1, 4}; "5" has {2, 3}: "7"'s lowest voter is lower.
  const std::vector<Candidate> c = {Answer(4, "7"), Answer(3, "5"), Answer(2, "5"),
                                    Answer(1, "7")};
  const VoteResult r = MajorityVote(c);
  EXPECT_EQ(r.answer, "7");
  EXPECT_DOUBLE_EQ(r.support, 0.5);
  EXPECT_EQ(r.tally[1].answer, "5");
  ExpectOrderIndependent(c, [](const std::vector<Candidate>& v) { return MajorityVote(v); });
}

TEST(MajorityVoteTest, ThreeWayTieIsOrderedByLowestAgent) {
  const std::vector<Candidate> c = {Answer(5, "c"), Answer(9, "a"), Answer(3, "b")};
  const VoteResult r = MajorityVote(c);
  EXPECT_EQ(r.answer, "b");
  ASSERT_EQ(r.tally.size(), 3u);
  EXPECT_EQ(r.tally[1].answer, "c");
  EXPECT_EQ(r.tally[2].answer, "a");
  ExpectOrderIndependent(c, [](const std::vector<Candidate>& v) { return MajorityVote(v); });
}

TEST(MajorityVoteTest, CandidatesWithoutAnswerAbstain) {
  const std::vector<Candidate> c = {NoAnswer(0, 99.0), NoAnswer(1), Answer(2, "3"),
                                    Answer(3, "4"), Answer(4, "4")};
  const VoteResult r = MajorityVote(c);
  EXPECT_EQ(r.answer, "4");
  EXPECT_DOUBLE_EQ(r.support, 2.0 / 3.0);  // of the three answers, not five agents
  EXPECT_EQ(r.tally.size(), 2u);
}

TEST(MajorityVoteTest, NoAnswersMeansNoResult) {
  const VoteResult none = MajorityVote({});
  EXPECT_FALSE(none.has_answer);
  EXPECT_EQ(none.representative_agent, -1);
  EXPECT_EQ(none.support, 0.0);
  EXPECT_TRUE(none.tally.empty());
  const std::vector<Candidate> c = {NoAnswer(0), NoAnswer(1)};
  const VoteResult r = MajorityVote(c);
  EXPECT_FALSE(r.has_answer);
  EXPECT_EQ(r.answer, "");
  EXPECT_TRUE(r.tally.empty());
}

TEST(MajorityVoteTest, RepresentativeIsTheWinnersMostConfidentAgent) {
  const std::vector<Candidate> c = {Answer(0, "1", 5.0), Answer(1, "2", 99.0),
                                    Answer(2, "1", 7.0), Answer(3, "1", 6.0)};
  EXPECT_EQ(MajorityVote(c).representative_agent, 2);
  // Equal confidence: the lowest index.
  const std::vector<Candidate> tied = {Answer(6, "1", 1.0), Answer(4, "1", 1.0)};
  EXPECT_EQ(MajorityVote(tied).representative_agent, 4);
}

TEST(MajorityVoteTest, UnanimityHasFullSupport) {
  const std::vector<Candidate> c = {Answer(0, "x"), Answer(1, "x")};
  EXPECT_EQ(MajorityVote(c).support, 1.0);
}

TEST(ConfidenceVoteTest, WeightsVotesByConfidence) {
  // Majority says "A" (3 votes) but "B"'s two votes are far more confident.
  const std::vector<Candidate> c = {Answer(0, "A", 1.0), Answer(1, "A", 1.0),
                                    Answer(2, "A", 1.0), Answer(3, "B", 5.0),
                                    Answer(4, "B", 4.0)};
  EXPECT_EQ(MajorityVote(c).answer, "A");
  const VoteResult r = ConfidenceVote(c, 100.0);
  EXPECT_EQ(r.answer, "B");
  EXPECT_DOUBLE_EQ(r.tally[0].weight, 9.0);
  EXPECT_EQ(r.tally[0].votes, 2);
  EXPECT_DOUBLE_EQ(r.tally[1].weight, 3.0);
  EXPECT_DOUBLE_EQ(r.support, 9.0 / 12.0);
  EXPECT_EQ(r.representative_agent, 3);
}

TEST(ConfidenceVoteTest, KeepsOnlyTheTopPercentByConfidence) {
  // Ten answers: the three most confident say "x", the rest "y".
  std::vector<Candidate> c;
  for (int i = 0; i < 10; ++i) c.push_back(Answer(i, i < 3 ? "x" : "y", 10.0 - i));
  // 30% of 10 keeps exactly 3 (the slack keeps 0.3 * 10 from rounding up to 4).
  VoteResult r = ConfidenceVote(c, 30.0);
  EXPECT_EQ(r.answer, "x");
  ASSERT_EQ(r.tally.size(), 1u);
  EXPECT_THAT(r.tally[0].agents, ElementsAre(0, 1, 2));
  EXPECT_EQ(r.support, 1.0);
  // 40% keeps 4: x = 10 + 9 + 8 = 27 against y = 7.
  r = ConfidenceVote(c, 40.0);
  EXPECT_EQ(r.answer, "x");
  EXPECT_DOUBLE_EQ(r.tally[1].weight, 7.0);
  // 90% keeps 9.
  r = ConfidenceVote(c, 90.0);
  int kept = 0;
  for (const VoteTally& t : r.tally) kept += t.votes;
  EXPECT_EQ(kept, 9);
  // 100% keeps all: y = 7+6+5+4+3+2+1 = 28 > x = 27.
  r = ConfidenceVote(c, 100.0);
  EXPECT_EQ(r.answer, "y");
  EXPECT_DOUBLE_EQ(r.tally[0].weight, 28.0);
}

TEST(ConfidenceVoteTest, KeepsAtLeastOneAndRoundsUp) {
  const std::vector<Candidate> c = {Answer(0, "a", 1.0), Answer(1, "b", 2.0),
                                    Answer(2, "c", 3.0)};
  VoteResult r = ConfidenceVote(c, 0.001);  // ceil(0.00003) = 1
  EXPECT_EQ(r.answer, "c");
  EXPECT_EQ(r.tally.size(), 1u);
  r = ConfidenceVote(c, 34.0);  // ceil(1.02) = 2
  EXPECT_EQ(r.tally.size(), 2u);
}

TEST(ConfidenceVoteTest, TheCutAmongEqualConfidencesKeepsLowerAgents) {
  const std::vector<Candidate> c = {Answer(3, "late", 2.0), Answer(1, "early", 2.0),
                                    Answer(2, "mid", 2.0)};
  const VoteResult r = ConfidenceVote(c, 50.0);  // keeps 2 of 3
  ASSERT_EQ(r.tally.size(), 2u);
  EXPECT_EQ(r.answer, "early");  // equal weights: lowest agent
  EXPECT_EQ(r.tally[1].answer, "mid");
  ExpectOrderIndependent(c,
                         [](const std::vector<Candidate>& v) { return ConfidenceVote(v, 50.0); });
}

TEST(ConfidenceVoteTest, AnswerlessCandidatesTakeNoSlots) {
  // The two most confident candidates have no answer; 50% of the 2 answered
  // ones keeps "b" (confidence 3), not nothing.
  const std::vector<Candidate> c = {NoAnswer(0, 50.0), NoAnswer(1, 40.0), Answer(2, "a", 1.0),
                                    Answer(3, "b", 3.0)};
  const VoteResult r = ConfidenceVote(c, 50.0);
  EXPECT_EQ(r.answer, "b");
  EXPECT_EQ(r.tally.size(), 1u);
  const std::vector<Candidate> none = {NoAnswer(0, 1.0)};
  EXPECT_FALSE(ConfidenceVote(none, 90.0).has_answer);
}

TEST(ConfidenceVoteTest, NonPositiveConfidencesAreShiftedSoTheLowestKeptWeighsOne) {
  // Mean logprobs (negative): kept weights become c + 1 - (-3) = c + 4.
  const std::vector<Candidate> c = {Answer(0, "p", -1.0), Answer(1, "q", -3.0),
                                    Answer(2, "q", -2.5)};
  const VoteResult r = ConfidenceVote(c, 100.0);
  // p: 3; q: 1 + 1.5 = 2.5.
  EXPECT_EQ(r.answer, "p");
  EXPECT_DOUBLE_EQ(r.tally[0].weight, 3.0);
  EXPECT_DOUBLE_EQ(r.tally[1].weight, 2.5);
  EXPECT_DOUBLE_EQ(r.support, 3.0 / 5.5);
  // Zero counts as non-positive too: weights 1 and 3.
  const std::vector<Candidate> zero = {Answer(0, "z", 0.0), Answer(1, "t", 2.0)};
  const VoteResult z = ConfidenceVote(zero, 100.0);
  EXPECT_DOUBLE_EQ(z.tally[0].weight, 3.0);
  EXPECT_DOUBLE_EQ(z.tally[1].weight, 1.0);
}

TEST(ConfidenceVoteTest, ResultDoesNotDependOnInputOrder) {
  std::vector<Candidate> c;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> conf(0.1, 20.0);
  const char* answers[] = {"1", "2", "3"};
  for (int i = 0; i < 64; ++i) c.push_back(Answer(i, answers[i % 3], conf(rng)));
  c.push_back(NoAnswer(64, 30.0));
  ExpectOrderIndependent(c,
                         [](const std::vector<Candidate>& v) { return ConfidenceVote(v, 60.0); });
  ExpectOrderIndependent(c, [](const std::vector<Candidate>& v) { return MajorityVote(v); });
}

TEST(WeightedVoteTest, SumsTheGivenWeightsWithoutFilterOrShift) {
  // Verifier P(yes) per solution: "12" has 0.9 + 0.0, "13" has 0.4 + 0.3.
  const std::vector<Candidate> c = {Answer(0, "12", 0.9), Answer(1, "13", 0.4),
                                    Answer(2, "13", 0.3), Answer(3, "12", 0.0),
                                    NoAnswer(4, 1.0)};
  const VoteResult r = WeightedVote(c);
  EXPECT_EQ(r.answer, "12");
  EXPECT_DOUBLE_EQ(r.tally[0].weight, 0.9);
  EXPECT_EQ(r.tally[0].votes, 2);  // the zero-weight vote still counts as a vote
  EXPECT_THAT(r.tally[0].agents, ElementsAre(0, 3));
  EXPECT_DOUBLE_EQ(r.tally[1].weight, 0.7);
  EXPECT_DOUBLE_EQ(r.support, 0.9 / 1.6);
  EXPECT_EQ(r.representative_agent, 0);
  ExpectOrderIndependent(c, [](const std::vector<Candidate>& v) { return WeightedVote(v); });
}

TEST(WeightedVoteTest, AllZeroWeightsFallBackToTheLowestAgentWithNoSupport) {
  const std::vector<Candidate> c = {Answer(2, "b", 0.0), Answer(1, "a", 0.0)};
  const VoteResult r = WeightedVote(c);
  EXPECT_TRUE(r.has_answer);
  EXPECT_EQ(r.answer, "a");
  EXPECT_EQ(r.support, 0.0);
}

TEST(WeightedVoteDeathTest, NegativeOrNonFiniteWeightIsABug) {
  const std::vector<Candidate> negative = {Answer(0, "a", -0.5)};
  EXPECT_DEATH(WeightedVote(negative), "weight");
  const std::vector<Candidate> inf = {Answer(0, "a", INFINITY)};
  EXPECT_DEATH(WeightedVote(inf), "weight");
}

TEST(ConfidenceVoteDeathTest, RejectsPercentOutsideRangeAndNonFiniteConfidence) {
  const std::vector<Candidate> c = {Answer(0, "a", 1.0)};
  EXPECT_DEATH(ConfidenceVote(c, 0.0), "keep_top_percent");
  EXPECT_DEATH(ConfidenceVote(c, 100.5), "keep_top_percent");
  const std::vector<Candidate> nan = {Answer(0, "a", std::nan(""))};
  EXPECT_DEATH(ConfidenceVote(nan, 50.0), "confidence");
}

}  // namespace
}  // namespace conclave::orchestrator
