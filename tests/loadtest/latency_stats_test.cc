// Nearest-rank percentiles: always a measured value, the maximum for p99 of
// fewer than 100 samples.
#include "loadtest/load/latency_stats.h"

#include <vector>

#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

std::vector<double> OneTo(int n) {
  std::vector<double> v;
  for (int i = 1; i <= n; ++i) v.push_back(i);
  return v;
}

TEST(LatencyStatsTest, NearestRankPercentilesOfOneToAHundred) {
  const std::vector<double> v = OneTo(100);
  EXPECT_EQ(Percentile(v, 0), 1);
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 95), 95);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile(v, 99.5), 100);
  EXPECT_EQ(Percentile(v, 100), 100);
}

TEST(LatencyStatsTest, FewSamplesTakeTheRankAboveNeverAnInterpolation) {
  const std::vector<double> v = OneTo(20);
  EXPECT_EQ(Percentile(v, 50), 10);  // rank 10 exactly
  EXPECT_EQ(Percentile(v, 95), 19);  // rank 19 exactly
  EXPECT_EQ(Percentile(v, 99), 20);  // rank ceil(19.8) = 20: the maximum
  const std::vector<double> three = {10, 20, 30};
  EXPECT_EQ(Percentile(three, 50), 20);
  EXPECT_EQ(Percentile(three, 34), 20);
  EXPECT_EQ(Percentile(three, 33), 10);
  EXPECT_EQ(Percentile({7.5}, 99), 7.5);
}

TEST(LatencyStatsTest, SummarizeSortsItsSamples) {
  const LatencySummary s = Summarize({40, 10, 30, 20});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 25);
  EXPECT_EQ(s.p50, 20);
  EXPECT_EQ(s.p95, 40);
  EXPECT_EQ(s.p99, 40);
  EXPECT_EQ(s.max, 40);
}

TEST(LatencyStatsTest, NoSamplesSummarizeAsZeros) {
  const LatencySummary s = Summarize({});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.p99, 0);
  EXPECT_EQ(s.max, 0);
}

}  // namespace
}  // namespace conclave::loadtest
