#include "orchestrator/policy/consensus_stop.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::HasSubstr;

ConsensusStop Make(int min_finished, double threshold) {
  absl::StatusOr<ConsensusStop> stop = ConsensusStop::Create({min_finished, threshold});
  EXPECT_TRUE(stop.ok()) << stop.status();
  return *std::move(stop);
}

TEST(ConsensusStopTest, StopsOnceEnoughFinishedAgentsAgree) {
  ConsensusStop stop = Make(3, 0.6);
  stop.OnAgentFinished(0, true, "18");
  EXPECT_FALSE(stop.ShouldStop());  // 1 finished < k = 3
  stop.OnAgentFinished(1, true, "18");
  EXPECT_FALSE(stop.ShouldStop());  // 2 finished < 3, although unanimous
  stop.OnAgentFinished(2, true, "20");
  EXPECT_TRUE(stop.ShouldStop());  // 2/3 >= 0.6
  EXPECT_EQ(stop.finished(), 3);
  EXPECT_EQ(stop.leading_answer(), "18");
  EXPECT_EQ(stop.leading_votes(), 2);
  EXPECT_DOUBLE_EQ(stop.leading_share(), 2.0 / 3.0);
}

TEST(ConsensusStopTest, DisagreementKeepsGoing) {
  ConsensusStop stop = Make(2, 0.75);
  stop.OnAgentFinished(0, true, "a");
  stop.OnAgentFinished(1, true, "b");
  EXPECT_FALSE(stop.ShouldStop());  // 1/2
  stop.OnAgentFinished(2, true, "a");
  EXPECT_FALSE(stop.ShouldStop());  // 2/3 < 0.75
  stop.OnAgentFinished(3, true, "a");
  EXPECT_TRUE(stop.ShouldStop());  // 3/4
}

TEST(ConsensusStopTest, AgentsWithoutAnswerCountInTheDenominator) {
  ConsensusStop stop = Make(2, 1.0);
  stop.OnAgentFinished(0, true, "5");
  stop.OnAgentFinished(1, false, "");
  EXPECT_FALSE(stop.ShouldStop());  // 1/2, not 1/1
  EXPECT_DOUBLE_EQ(stop.leading_share(), 0.5);
  EXPECT_EQ(stop.leading_answer(), "5");
}

TEST(ConsensusStopTest, NoAnswersNeverStop) {
  ConsensusStop stop = Make(1, 0.1);
  stop.OnAgentFinished(0, false, "ignored");
  stop.OnAgentFinished(1, false, "");
  EXPECT_FALSE(stop.ShouldStop());
  EXPECT_FALSE(stop.has_leader());
  EXPECT_EQ(stop.leading_answer(), "");
  EXPECT_EQ(stop.leading_share(), 0.0);
}

TEST(ConsensusStopTest, ShareComparisonToleratesRounding) {
  // 0.6 * 5 is 3.0000000000000004 in double; 3 of 5 must still stop.
  ConsensusStop stop = Make(5, 0.6);
  for (int i = 0; i < 3; ++i) stop.OnAgentFinished(i, true, "x");
  stop.OnAgentFinished(3, true, "y");
  stop.OnAgentFinished(4, true, "z");
  EXPECT_TRUE(stop.ShouldStop());
}

TEST(ConsensusStopTest, RepeatedReportsOfOneAgentCountOnce) {
  ConsensusStop stop = Make(2, 0.9);
  stop.OnAgentFinished(0, true, "x");
  stop.OnAgentFinished(0, true, "x");
  EXPECT_EQ(stop.finished(), 1);
  EXPECT_FALSE(stop.ShouldStop());
  stop.OnAgentFinished(0, true, "y");  // still agent 0: ignored
  EXPECT_EQ(stop.leading_answer(), "x");
  EXPECT_EQ(stop.leading_votes(), 1);
}

TEST(ConsensusStopTest, LeaderTieGoesToTheLowestAgentWhateverTheArrivalOrder) {
  // "p" from agents {2, 5}, "q" from {1, 7}: tie, and q's lowest voter wins.
  std::vector<std::pair<int, std::string>> reports = {{5, "p"}, {2, "p"}, {7, "q"}, {1, "q"}};
  std::mt19937 rng(11);
  for (int round = 0; round < 24; ++round) {
    std::shuffle(reports.begin(), reports.end(), rng);
    ConsensusStop stop = Make(4, 0.5);
    for (const auto& [agent, answer] : reports) stop.OnAgentFinished(agent, true, answer);
    EXPECT_EQ(stop.leading_answer(), "q");
    EXPECT_EQ(stop.leading_votes(), 2);
    EXPECT_TRUE(stop.ShouldStop());  // 2/4 >= 0.5
  }
}

TEST(ConsensusStopTest, LeaderChangesWhenOvertaken) {
  ConsensusStop stop = Make(1, 0.5);
  stop.OnAgentFinished(3, true, "a");
  EXPECT_EQ(stop.leading_answer(), "a");
  stop.OnAgentFinished(1, true, "b");  // tie 1-1: b has the lower agent
  EXPECT_EQ(stop.leading_answer(), "b");
  stop.OnAgentFinished(4, true, "a");
  EXPECT_EQ(stop.leading_answer(), "a");
  EXPECT_EQ(stop.leading_votes(), 2);
  stop.OnAgentFinished(0, true, "b");  // 2-2: b's lowest voter (0) < a's (3)
  EXPECT_EQ(stop.leading_answer(), "b");
}

TEST(ConsensusStopTest, CreateRejectsBadOptionsNamingTheField) {
  absl::StatusOr<ConsensusStop> s = ConsensusStop::Create({0, 0.5});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("min_finished=0"));
  s = ConsensusStop::Create({1, 0.0});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("threshold=0"));
  EXPECT_FALSE(ConsensusStop::Create({1, 1.5}).ok());
  EXPECT_FALSE(ConsensusStop::Create({1, std::nan("")}).ok());
  EXPECT_TRUE(ConsensusStop::Create({1, 1.0}).ok());
}

}  // namespace
}  // namespace conclave::orchestrator
