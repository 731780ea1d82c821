#include "engine/sampling/sampler.h"

#include <cmath>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::engine {
namespace {

TEST(SamplerTest, TemperatureZeroIsArgmaxWithTheLowestIdOnTies) {
  Sampler s({0.0f, 1.0f, 1});
  EXPECT_EQ(s.Sample(std::vector<float>{0.1f, 3.0f, -2.0f, 3.0f}), 1);
  EXPECT_EQ(Argmax(std::vector<float>{-5.0f}), 0);
}

TEST(SamplerTest, TheSameSeedGivesTheSameDraws) {
  std::vector<float> logits = {1.0f, 1.2f, 0.9f, 1.1f, 0.5f};
  Sampler a({1.0f, 1.0f, 1234}), b({1.0f, 1.0f, 1234}), c({1.0f, 1.0f, 99});
  std::vector<int> da, db, dc;
  for (int i = 0; i < 64; ++i) {
    da.push_back(a.Sample(logits));
    db.push_back(b.Sample(logits));
    dc.push_back(c.Sample(logits));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(SamplerTest, DrawsFollowTheSoftmaxAtTheTemperature) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  const float temperature = 0.7f;
  Sampler s({temperature, 1.0f, 5});
  std::map<int, int> counts;
  const int n = 60000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits)]++;
  double z = 0.0;
  for (float l : logits) z += std::exp(l / temperature);
  for (int id = 0; id < 3; ++id) {
    const double p = std::exp(logits[id] / temperature) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(counts[id] / double{n}, p, 5 * std::sqrt(p * (1 - p) / n)) << id;
  }
}

TEST(SamplerTest, TopPKeepsOnlyTheNucleus) {
  // softmax at T=1: [0.665, 0.245, 0.090]; top_p=0.6 keeps only id 0.
  Sampler s({1.0f, 0.6f, 7});
  for (int i = 0; i < 500; ++i) ASSERT_EQ(s.Sample(std::vector<float>{2.0f, 1.0f, 0.0f}), 0);
  // top_p=0.8 keeps ids 0 and 1, never 2.
  Sampler t({1.0f, 0.8f, 7});
  std::map<int, int> counts;
  for (int i = 0; i < 2000; ++i) counts[t.Sample(std::vector<float>{2.0f, 1.0f, 0.0f})]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(SamplerTest, RejectsOutOfRangeParameters) {
  EXPECT_FALSE(ValidateSamplingParams({-1.0f, 1.0f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({NAN, 1.0f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({1.0f, 0.0f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({1.0f, 1.5f, 0}).ok());
  EXPECT_TRUE(ValidateSamplingParams({0.7f, 0.9f, 0}).ok());
}

}  // namespace
}  // namespace conclave::engine
