#include "orchestrator/aggregate/verifier_score.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/model.h"
#include "engine/sampling/sampler.h"
#include "gtest/gtest.h"
#include "tests/testing/paths.h"

namespace conclave::orchestrator {
namespace {

using engine::TokenLogprob;

constexpr int32_t kYes = 10, kYesSpace = 11, kNo = 20, kNoSpace = 21, kOther = 30;

float Log(double p) { return static_cast<float>(std::log(p)); }

TEST(VerifierYesProbabilityTest, NormalisesYesAgainstNo) {
  const std::vector<TokenLogprob> top = {{kYes, Log(0.6)}, {kOther, Log(0.2)}, {kNo, Log(0.2)}};
  EXPECT_NEAR(VerifierYesProbability(top, {kYes}, {kNo}), 0.75, 1e-6);
}

TEST(VerifierYesProbabilityTest, SumsEveryListedVariant) {
  const std::vector<TokenLogprob> top = {
      {kYes, Log(0.3)}, {kNoSpace, Log(0.25)}, {kYesSpace, Log(0.2)}, {kNo, Log(0.05)}};
  // (0.3 + 0.2) / (0.3 + 0.2 + 0.25 + 0.05)
  EXPECT_NEAR(VerifierYesProbability(top, {kYes, kYesSpace}, {kNo, kNoSpace}), 0.625, 1e-6);
}

TEST(VerifierYesProbabilityTest, OnlyOneSidePresent) {
  const std::vector<TokenLogprob> yes_only = {{kOther, Log(0.9)}, {kYes, Log(0.01)}};
  EXPECT_DOUBLE_EQ(VerifierYesProbability(yes_only, {kYes}, {kNo}), 1.0);
  const std::vector<TokenLogprob> no_only = {{kNo, Log(0.01)}};
  EXPECT_DOUBLE_EQ(VerifierYesProbability(no_only, {kYes}, {kNo}), 0.0);
}

TEST(VerifierYesProbabilityTest, NeitherPresentIsAHalf) {
  const std::vector<TokenLogprob> top = {{kOther, Log(0.99)}};
  EXPECT_EQ(VerifierYesProbability(top, {kYes}, {kNo}), 0.5);
  EXPECT_EQ(VerifierYesProbability({}, {kYes}, {kNo}), 0.5);
  EXPECT_EQ(VerifierYesProbability(top, {}, {}), 0.5);
}

TEST(VerifierYesProbabilityTest, VeryNegativeLogprobsDoNotUnderflow) {
  // exp(-900) is 0 in double; the ratio is still e^-900 / (e^-900 + e^-901).
  const std::vector<TokenLogprob> top = {{kYes, -900.0f}, {kNo, -901.0f}};
  EXPECT_NEAR(VerifierYesProbability(top, {kYes}, {kNo}), 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

TEST(VerifierYesProbabilityTest, DuplicateEntriesAndNonFiniteLogprobsCountOnceOrNot) {
  const std::vector<TokenLogprob> dup = {{kYes, Log(0.5)}, {kYes, Log(0.5)}, {kNo, Log(0.5)}};
  EXPECT_DOUBLE_EQ(VerifierYesProbability(dup, {kYes}, {kNo}), 0.5);
  const std::vector<TokenLogprob> nan = {{kYes, std::nanf("")}, {kNo, Log(0.5)}};
  EXPECT_DOUBLE_EQ(VerifierYesProbability(nan, {kYes}, {kNo}), 0.0);
  // An id in both lists counts as yes.
  const std::vector<TokenLogprob> both = {{kYes, Log(0.5)}};
  EXPECT_DOUBLE_EQ(VerifierYesProbability(both, {kYes}, {kYes}), 1.0);
}

class YesNoTokenIdsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = conclave::testing::DefaultModelPath();
    if (path.empty()) return;
    absl::StatusOr<std::unique_ptr<engine::Model>> model = engine::Model::Load(path);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "SmolLM2 model not fetched";
  }
  static engine::Model* model_;
};
engine::Model* YesNoTokenIdsTest::model_ = nullptr;

TEST_F(YesNoTokenIdsTest, FindsSingleTokenVariantsOfSmolLm2) {
  const engine::Tokenizer& tok = model_->tokenizer();
  const YesNoTokens ids = YesNoTokenIds(tok);
  ASSERT_FALSE(ids.yes.empty());
  ASSERT_FALSE(ids.no.empty());
  // "Yes" and " Yes" are single tokens in SmolLM2's vocabulary, listed first.
  ASSERT_GE(ids.yes.size(), 2u);
  EXPECT_EQ(tok.Decode({ids.yes[0]}), "Yes");
  EXPECT_EQ(tok.Decode({ids.yes[1]}), " Yes");
  EXPECT_EQ(tok.Decode({ids.no[0]}), "No");
  for (int32_t id : ids.yes) {
    std::string text = tok.Decode({id});
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_TRUE(text == "yes" || text == " yes") << "\"" << tok.Decode({id}) << "\"";
  }
  for (int32_t id : ids.no) {
    std::string text = tok.Decode({id});
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_TRUE(text == "no" || text == " no") << "\"" << tok.Decode({id}) << "\"";
  }
  for (int32_t y : ids.yes) {
    for (int32_t n : ids.no) EXPECT_NE(y, n);
  }
}

}  // namespace
}  // namespace conclave::orchestrator
