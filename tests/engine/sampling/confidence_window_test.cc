#include "engine/sampling/confidence_window.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::engine {
namespace {

TEST(ConfidenceWindowTest, IsZeroBeforeAnyValue) {
  ConfidenceWindow w(4);
  EXPECT_EQ(w.count(), 0);
  EXPECT_EQ(w.mean(), 0.0f);
  EXPECT_EQ(w.lowest_mean(), 0.0f);
  EXPECT_FALSE(w.full());
}

TEST(ConfidenceWindowTest, MeanAveragesOnlyTheLastWindowValues) {
  ConfidenceWindow w(3);
  w.Add(1.0f);
  w.Add(2.0f);
  EXPECT_FLOAT_EQ(w.mean(), 1.5f);
  w.Add(3.0f);
  w.Add(4.0f);
  EXPECT_FLOAT_EQ(w.mean(), 3.0f);
  EXPECT_EQ(w.count(), 4);
  EXPECT_TRUE(w.full());
}

TEST(ConfidenceWindowTest, LowestMeanIsTheRunningMeanUntilTheWindowFills) {
  ConfidenceWindow w(4);
  w.Add(5.0f);
  w.Add(1.0f);
  EXPECT_FLOAT_EQ(w.lowest_mean(), 3.0f);
  w.Add(6.0f);
  EXPECT_FLOAT_EQ(w.lowest_mean(), 4.0f);  // may rise: no full window yet
}

TEST(ConfidenceWindowTest, LowestMeanIsTheMinimumOverFullWindowsOnly) {
  ConfidenceWindow w(2);
  w.Add(1.0f);  // running mean 1, but no full window yet
  w.Add(9.0f);  // first full window: 5
  EXPECT_FLOAT_EQ(w.lowest_mean(), 5.0f);
  w.Add(3.0f);  // 6
  w.Add(1.0f);  // 2
  w.Add(9.0f);  // 5
  EXPECT_FLOAT_EQ(w.mean(), 5.0f);
  EXPECT_FLOAT_EQ(w.lowest_mean(), 2.0f);
}

TEST(ConfidenceWindowTest, AWindowOfOneTracksTheLatestValue) {
  ConfidenceWindow w(1);
  w.Add(4.0f);
  w.Add(2.5f);
  w.Add(7.0f);
  EXPECT_FLOAT_EQ(w.mean(), 7.0f);
  EXPECT_FLOAT_EQ(w.lowest_mean(), 2.5f);
}

TEST(ConfidenceWindowTest, HugeValuesLeavingTheWindowDoNotPoisonTheMean) {
  ConfidenceWindow w(4);
  for (int i = 0; i < 4; ++i) w.Add(1e30f);
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f, 5.0f}) w.Add(v);
  EXPECT_EQ(w.mean(), 3.5f);  // exactly (2 + 3 + 4 + 5) / 4
  EXPECT_EQ(w.lowest_mean(), 2.5f);
}

TEST(ConfidenceWindowTest, MatchesABruteForceReferenceOnLongRandomStreams) {
  std::mt19937_64 gen(17);
  std::uniform_real_distribution<float> value(0.0f, 20.0f);
  for (const int window : {1, 7, 64, 2048}) {
    ConfidenceWindow w(window);
    std::vector<float> seen;
    double lowest = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 20000; ++i) {
      seen.push_back(value(gen));
      w.Add(seen.back());
      const int n = std::min<int>(window, seen.size());
      double sum = 0.0;
      if (i % 97 == 0 || n == window) {
        for (int j = static_cast<int>(seen.size()) - n; j < static_cast<int>(seen.size()); ++j) {
          sum += seen[j];
        }
      }
      if (n == window) lowest = std::min(lowest, sum / n);
      if (i % 97 == 0) {
        ASSERT_NEAR(w.mean(), sum / n, 1e-4) << "window " << window << " at " << i;
        const double expected_lowest = n == window ? lowest : sum / n;
        ASSERT_NEAR(w.lowest_mean(), expected_lowest, 1e-4) << "window " << window << " at " << i;
      }
    }
    EXPECT_EQ(w.count(), 20000);
  }
}

TEST(ConfidenceWindowDeathTest, RefusesAnEmptyWindow) {
  EXPECT_DEATH(ConfidenceWindow(0), "confidence window");
}

}  // namespace
}  // namespace conclave::engine
