// PoissonArrivals: with a fixed seed, the gaps are exponential with mean
// 1 / rate and the counts per second are Poisson (variance = mean); the same
// seed repeats the schedule exactly.
#include "loadtest/load/arrival.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

constexpr double kRate = 5;
constexpr int kGaps = 20000;

std::vector<double> Gaps(uint64_t seed, int n = kGaps) {
  PoissonArrivals a(kRate, seed);
  std::vector<double> gaps;
  for (int i = 0; i < n; ++i) gaps.push_back(absl::ToDoubleSeconds(a.NextGap()));
  return gaps;
}

TEST(PoissonArrivalsTest, GapsAreExponentialWithMeanOneOverTheRate) {
  const std::vector<double> gaps = Gaps(42);
  double sum = 0, sum_sq = 0;
  int above_mean = 0;
  for (double g : gaps) {
    ASSERT_GE(g, 0);
    sum += g;
    sum_sq += g * g;
    above_mean += g > 1 / kRate;
  }
  const double mean = sum / kGaps;
  const double sd = std::sqrt(sum_sq / kGaps - mean * mean);
  // Standard error of the mean: 0.2 / sqrt(20000) = 0.0014 s; 3% is ~4 SE.
  EXPECT_NEAR(mean, 1 / kRate, 0.03 / kRate);
  // An exponential's standard deviation equals its mean.
  EXPECT_NEAR(sd / mean, 1.0, 0.04);
  // P(gap > mean) = e^-1.
  EXPECT_NEAR(static_cast<double>(above_mean) / kGaps, std::exp(-1.0), 0.015);
}

TEST(PoissonArrivalsTest, CountsPerSecondHaveTheVarianceOfAPoissonProcess) {
  PoissonArrivals a(kRate, 7);
  const int seconds = 4000;
  std::vector<int> counts(seconds, 0);
  for (absl::Duration t = a.NextArrival(); t < absl::Seconds(seconds); t = a.NextArrival()) {
    ++counts[static_cast<size_t>(absl::ToInt64Seconds(t))];
  }
  double sum = 0, sum_sq = 0;
  for (int c : counts) {
    sum += c;
    sum_sq += static_cast<double>(c) * c;
  }
  const double mean = sum / seconds;
  const double variance = sum_sq / seconds - mean * mean;
  EXPECT_NEAR(mean, kRate, 0.15);
  EXPECT_NEAR(variance / mean, 1.0, 0.1);  // index of dispersion
}

TEST(PoissonArrivalsTest, TheSameSeedRepeatsTheScheduleAndAnotherDoesNot) {
  EXPECT_EQ(Gaps(3, 100), Gaps(3, 100));
  EXPECT_NE(Gaps(3, 100), Gaps(4, 100));
}

TEST(PoissonArrivalsTest, ArrivalsAreTheRunningSumOfTheGaps) {
  PoissonArrivals gaps(kRate, 11), arrivals(kRate, 11);
  absl::Duration sum = absl::ZeroDuration();
  for (int i = 0; i < 50; ++i) {
    sum += gaps.NextGap();
    EXPECT_EQ(arrivals.NextArrival(), sum);
  }
}

}  // namespace
}  // namespace conclave::loadtest
