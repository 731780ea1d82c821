#include "orchestrator/policy/confidence_stop.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::HasSubstr;

ConfidenceStop Make(int warmup, double keep_top_percent, int min_tokens) {
  absl::StatusOr<ConfidenceStop> stop =
      ConfidenceStop::Create({warmup, keep_top_percent, min_tokens});
  EXPECT_TRUE(stop.ok()) << stop.status();
  return *std::move(stop);
}

TEST(PercentileTest, InterpolatesLinearlyLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4, 5], p): 10 -> 1.4, 50 -> 3, 90 -> 4.6.
  const std::vector<double> v = {5, 3, 1, 4, 2};
  EXPECT_DOUBLE_EQ(Percentile(v, 10), 1.4);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 3.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 4.6);
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 5.0);
  EXPECT_DOUBLE_EQ(Percentile({7.5}, 37), 7.5);
  // numpy.percentile([10, 20, 30, 40], 10) = 13.
  EXPECT_DOUBLE_EQ(Percentile({40, 10, 30, 20}, 10), 13.0);
}

TEST(ConfidenceStopTest, NeverAbortsBeforeWarmupCompletes) {
  ConfidenceStop stop = Make(3, 90.0, 0);
  EXPECT_FALSE(stop.ShouldAbort(-1e9, 100000));
  stop.OnAgentFinished(0, 10.0);
  stop.OnAgentFinished(1, 12.0);
  EXPECT_FALSE(stop.calibrated());
  EXPECT_EQ(stop.warmup_reports(), 2);
  EXPECT_FALSE(stop.ShouldAbort(0.0, 100000));
  stop.OnAgentFinished(2, 14.0);
  EXPECT_TRUE(stop.calibrated());
}

TEST(ConfidenceStopTest, ThresholdIsTheComplementPercentileOfWarmupLowestConfidences) {
  // Keep the top 90%: the 10th percentile of {1..5} is 1.4.
  ConfidenceStop conservative = Make(5, 90.0, 0);
  for (int i = 0; i < 5; ++i) conservative.OnAgentFinished(i, 5.0 - i);
  EXPECT_DOUBLE_EQ(conservative.threshold(), 1.4);
  // Keep the top 10%: the 90th percentile, 4.6.
  ConfidenceStop aggressive = Make(5, 10.0, 0);
  for (int i = 0; i < 5; ++i) aggressive.OnAgentFinished(i, 1.0 + i);
  EXPECT_DOUBLE_EQ(aggressive.threshold(), 4.6);
  // Keep 100%: the minimum.
  ConfidenceStop keep_all = Make(5, 100.0, 0);
  for (int i = 0; i < 5; ++i) keep_all.OnAgentFinished(i, 1.0 + i);
  EXPECT_DOUBLE_EQ(keep_all.threshold(), 1.0);
}

TEST(ConfidenceStopTest, AbortsStrictlyBelowTheThreshold) {
  ConfidenceStop stop = Make(2, 100.0, 0);
  stop.OnAgentFinished(0, 8.0);
  stop.OnAgentFinished(1, 9.0);
  ASSERT_DOUBLE_EQ(stop.threshold(), 8.0);
  EXPECT_TRUE(stop.ShouldAbort(7.99, 10));
  EXPECT_FALSE(stop.ShouldAbort(8.0, 10));  // equal is kept
  EXPECT_FALSE(stop.ShouldAbort(8.5, 10));
  EXPECT_FALSE(stop.ShouldAbort(std::nan(""), 10));
}

TEST(ConfidenceStopTest, WaitsForMinTokens) {
  ConfidenceStop stop = Make(1, 90.0, 2048);
  stop.OnAgentFinished(0, 10.0);
  EXPECT_FALSE(stop.ShouldAbort(1.0, 0));
  EXPECT_FALSE(stop.ShouldAbort(1.0, 2047));
  EXPECT_TRUE(stop.ShouldAbort(1.0, 2048));
  EXPECT_TRUE(stop.ShouldAbort(1.0, 5000));
}

TEST(ConfidenceStopTest, LaterReportsAndRepeatsDoNotMoveTheThreshold) {
  ConfidenceStop stop = Make(2, 50.0, 0);
  stop.OnAgentFinished(0, 4.0);
  stop.OnAgentFinished(0, 100.0);  // same agent again: ignored
  EXPECT_EQ(stop.warmup_reports(), 1);
  stop.OnAgentFinished(1, 6.0);
  EXPECT_DOUBLE_EQ(stop.threshold(), 5.0);  // median of {4, 6}
  stop.OnAgentFinished(2, 0.0);
  stop.OnAgentFinished(3, 1000.0);
  EXPECT_DOUBLE_EQ(stop.threshold(), 5.0);
  EXPECT_EQ(stop.warmup_reports(), 2);
}

TEST(ConfidenceStopTest, CreateRejectsBadOptionsNamingTheField) {
  absl::StatusOr<ConfidenceStop> s = ConfidenceStop::Create({0, 90.0, 0});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("warmup=0"));
  s = ConfidenceStop::Create({4, 0.0, 0});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("keep_top_percent=0"));
  EXPECT_FALSE(ConfidenceStop::Create({4, 100.01, 0}).ok());
  EXPECT_FALSE(ConfidenceStop::Create({4, std::nan(""), 0}).ok());
  s = ConfidenceStop::Create({4, 90.0, -1});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("min_tokens=-1"));
}

TEST(ConfidenceStopDeathTest, NonFiniteWarmupValueIsABug) {
  ConfidenceStop stop = Make(2, 90.0, 0);
  EXPECT_DEATH(stop.OnAgentFinished(0, std::nan("")), "confidence");
}

}  // namespace
}  // namespace conclave::orchestrator
