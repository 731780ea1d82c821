// The mode mix: --mix parsing with named errors, draws that follow the
// weights with a fixed seed, and JSONL prompt files.
#include "loadtest/load/workload.h"

#include <array>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

using ::testing::HasSubstr;

TEST(ParseMixTest, WeightsAreNormalizedAndMissingModesWeighNothing) {
  absl::StatusOr<Mix> mix = ParseMix("instant=0.5,thinking=0.2,contemplate=0.3");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_DOUBLE_EQ(mix->of(Mode::kInstant), 0.5);
  EXPECT_DOUBLE_EQ(mix->of(Mode::kThinking), 0.2);
  EXPECT_DOUBLE_EQ(mix->of(Mode::kContemplate), 0.3);

  mix = ParseMix(" contemplate = 3 , instant=1 ");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_DOUBLE_EQ(mix->of(Mode::kInstant), 0.25);
  EXPECT_DOUBLE_EQ(mix->of(Mode::kThinking), 0);
  EXPECT_DOUBLE_EQ(mix->of(Mode::kContemplate), 0.75);
  EXPECT_EQ(MixToString(*mix), "instant=0.25,contemplate=0.75");
}

TEST(ParseMixTest, EveryMistakeIsNamed) {
  auto error = [](const char* text) { return std::string(ParseMix(text).status().message()); };
  EXPECT_THAT(error("instant=1,chat=1"), HasSubstr("unknown mode \"chat\""));
  EXPECT_THAT(error("instant=1,instant=2"), HasSubstr("instant is given twice"));
  EXPECT_THAT(error("instant=-1"), HasSubstr("must be a number >= 0"));
  EXPECT_THAT(error("instant=nan"), HasSubstr("must be a number >= 0"));
  EXPECT_THAT(error("instant=x"), HasSubstr("must be a number >= 0"));
  EXPECT_THAT(error("instant"), HasSubstr("is not NAME=WEIGHT"));
  EXPECT_THAT(error(""), HasSubstr("is not NAME=WEIGHT"));
  EXPECT_THAT(error("instant=0,thinking=0"), HasSubstr("at least one mode"));
  EXPECT_EQ(ParseMix("instant=1,,thinking=1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkloadTest, DrawsFollowTheWeightsAndTheSeed) {
  const Mix mix = *ParseMix("instant=0.5,thinking=0.2,contemplate=0.3");
  Workload w(mix, {"a", "b", "c", "d"}, 99);
  std::array<int, kNumModes> modes = {0, 0, 0};
  std::array<int, 4> prompts = {0, 0, 0, 0};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const WorkItem item = w.Next();
    ++modes[static_cast<int>(item.mode)];
    ASSERT_GE(item.prompt, 0);
    ASSERT_LT(item.prompt, 4);
    ++prompts[static_cast<size_t>(item.prompt)];
  }
  // Binomial standard errors are at most 0.0036; 0.015 is about 4.
  EXPECT_NEAR(modes[0] / static_cast<double>(n), 0.5, 0.015);
  EXPECT_NEAR(modes[1] / static_cast<double>(n), 0.2, 0.015);
  EXPECT_NEAR(modes[2] / static_cast<double>(n), 0.3, 0.015);
  for (int c : prompts) EXPECT_NEAR(c / static_cast<double>(n), 0.25, 0.015);

  Workload again(mix, {"a", "b", "c", "d"}, 99);
  Workload other(mix, {"a", "b", "c", "d"}, 100);
  bool differs = false;
  Workload first(mix, {"a", "b", "c", "d"}, 99);
  for (int i = 0; i < 50; ++i) {
    const WorkItem x = first.Next(), y = again.Next(), z = other.Next();
    EXPECT_EQ(x.mode, y.mode);
    EXPECT_EQ(x.prompt, y.prompt);
    EXPECT_EQ(x.seed, y.seed);
    differs |= x.seed != z.seed;
  }
  EXPECT_TRUE(differs);
}

TEST(WorkloadTest, AModeOfWeightZeroIsNeverDrawn) {
  Workload w(*ParseMix("contemplate=1"), {"q"}, 1);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(w.Next().mode, Mode::kContemplate);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(LoadPromptsTest, ReadsTheQuestionOfEveryLine) {
  const std::string path =
      WriteFile("prompts.jsonl",
                "{\"question\": \"What is 2+2?\", \"answer\": \"4\"}\n\n{\"question\": \"Hi?\"}\n");
  absl::StatusOr<std::vector<std::string>> p = LoadPrompts(path);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (std::vector<std::string>{"What is 2+2?", "Hi?"}));
}

TEST(LoadPromptsTest, ABadLineIsNamedByItsNumber) {
  const std::string path =
      WriteFile("bad.jsonl", "{\"question\": \"ok\"}\n{\"prompt\": \"no question\"}\n");
  const absl::Status s = LoadPrompts(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 2"));
  EXPECT_EQ(LoadPrompts(WriteFile("empty.jsonl", "\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadPrompts(::testing::TempDir() + "/missing.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LoadPromptsTest, TheBuiltInSetIsShortQuestions) {
  ASSERT_GE(BuiltinPrompts().size(), 4u);
  for (const std::string& q : BuiltinPrompts()) EXPECT_LT(q.size(), 120u);
}

}  // namespace
}  // namespace conclave::loadtest
