#include "orchestrator/plan/prompts.h"

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/chat_template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "orchestrator/answer/extract.h"

namespace conclave::orchestrator {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using Messages = std::vector<engine::ChatMessage>;

AgentSpec Agent(std::string role_prompt = "") {
  AgentSpec spec;
  spec.role_prompt = std::move(role_prompt);
  return spec;
}

TEST(AgentMessagesTest, PrependsASystemInstructionWithTheAnswerFormat) {
  const Messages question = {{"user", "Janet has 3 apples..."}};
  const Messages m = AgentMessages(question, Agent(), AnswerFormat::kGsm8k);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_THAT(m[0].content, HasSubstr("step by step"));
  EXPECT_THAT(m[0].content, HasSubstr("\"#### <number>\""));
  EXPECT_EQ(m[1].role, "user");
  EXPECT_EQ(m[1].content, "Janet has 3 apples...");
}

TEST(AgentMessagesTest, MergesIntoAnExistingSystemMessageAndAddsTheRole) {
  const Messages question = {{"system", "You are terse."}, {"user", "2+2?"}};
  const Messages m =
      AgentMessages(question, Agent("Work backwards from the goal."), AnswerFormat::kBoxed);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_THAT(m[0].content, StartsWith("You are terse.\n\n"));
  EXPECT_THAT(m[0].content, HasSubstr("\\boxed{}"));
  EXPECT_THAT(m[0].content, EndsWith("\n\nWork backwards from the goal."));
  EXPECT_EQ(m[1].content, "2+2?");
}

TEST(AgentMessagesTest, EachFormatAsksForWhatItsExtractorReads) {
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kGsm8k), HasSubstr("####"));
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kBoxed), HasSubstr("\\boxed"));
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kAnswerLine), HasSubstr("Answer:"));
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kAuto), HasSubstr("Answer:"));
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kMultipleChoice), HasSubstr("letter"));
  EXPECT_THAT(AnswerInstruction(AnswerFormat::kNumber), HasSubstr("number"));
}

TEST(AgentMessagesTest, RendersInEveryChatFormat) {
  const Messages question = {{"user", "What is 6*7?"}};
  const Messages m = AgentMessages(question, Agent("Check each step."), AnswerFormat::kNumber);
  for (engine::ChatFormat format : {engine::ChatFormat::kChatMl, engine::ChatFormat::kChatMlSmolLm,
                                    engine::ChatFormat::kGemma3}) {
    absl::StatusOr<std::string> prompt = engine::ApplyChatTemplate(format, m, true);
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    EXPECT_THAT(*prompt, HasSubstr("Check each step."));
    EXPECT_THAT(*prompt, Not(HasSubstr(engine::kSmolLmDefaultSystem)));
  }
}

TEST(VerifierMessagesTest, EndsWithTheYesNoQuestion) {
  const Messages m = VerifierMessages("What is 6*7?", "6*7 = 42.\nAnswer: 42");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[1].role, "user");
  EXPECT_THAT(m[1].content, HasSubstr("What is 6*7?"));
  EXPECT_THAT(m[1].content, HasSubstr("6*7 = 42.\nAnswer: 42"));
  EXPECT_THAT(m[1].content, EndsWith("Is this solution correct? Answer Yes or No."));
}

TEST(SynthesisMessagesTest, NumbersTheCandidatesAndAsksForTheFormat) {
  const Messages m =
      SynthesisMessages("Q?", {"first try: 5", "second try: 6"}, AnswerFormat::kGsm8k);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_THAT(m[0].content, HasSubstr("critically"));
  EXPECT_THAT(m[0].content, HasSubstr("####"));
  EXPECT_THAT(m[1].content, HasSubstr("Q?"));
  EXPECT_THAT(m[1].content, HasSubstr("Solution 1:\nfirst try: 5"));
  EXPECT_THAT(m[1].content, HasSubstr("Solution 2:\nsecond try: 6"));
}

TEST(SynthesisMessagesTest, LongCandidatesKeepTheirHeadAndTail) {
  const std::string longer = "HEAD" + std::string(1000, 'x') + "#### 42";
  const Messages m = SynthesisMessages("Q?", {longer}, AnswerFormat::kGsm8k, 100);
  EXPECT_THAT(m[1].content, HasSubstr("Solution 1:\nHEAD"));
  EXPECT_THAT(m[1].content, HasSubstr("#### 42"));
  EXPECT_THAT(m[1].content, HasSubstr("[... 911 characters omitted ...]"));
}

TEST(TruncateMiddleTest, FitsUnchangedAndCutsAtCharacterBoundaries) {
  EXPECT_EQ(TruncateMiddle("short", 10), "short");
  EXPECT_EQ(TruncateMiddle("0123456789", 10), "0123456789");
  EXPECT_EQ(TruncateMiddle("0123456789AB", 10), "01234\n[... 2 characters omitted ...]\n789AB");
  // "é" is 2 bytes; a cut inside one moves to its boundary.
  const std::string e = "\xC3\xA9";
  const std::string text = "ab" + e + e + e + "cd" + e + "ef";  // 14 bytes
  // Cuts at bytes 4 and 10 fall on boundaries: 4 characters go.
  EXPECT_EQ(TruncateMiddle(text, 8), "ab" + e + "\n[... 4 characters omitted ...]\n" + e + "ef");
  // Cuts at bytes 3 and 11 fall inside characters: the head shrinks to 2
  // bytes, the tail to 2 bytes, and 6 characters go.
  EXPECT_EQ(TruncateMiddle(text, 6), "ab\n[... 6 characters omitted ...]\nef");
  // Invalid UTF-8 never crashes and keeps at most 3 extra bytes of backoff.
  const std::string junk(50, '\x80');
  EXPECT_FALSE(TruncateMiddle(junk, 10).empty());
}

}  // namespace
}  // namespace conclave::orchestrator
