#include "orchestrator/answer/extract.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::HasSubstr;

// `text` for a failure message: long inputs shortened.
std::string Shown(std::string_view text) {
  return text.size() <= 300 ? std::string(text)
                            : std::string(text.substr(0, 150)) + "\n[...]\n" +
                                  std::string(text.substr(text.size() - 150));
}

// Expects `format` to find `normalized` in `text`.
void ExpectAnswer(std::string_view text, AnswerFormat format, std::string_view normalized) {
  const ExtractedAnswer answer = ExtractAnswer(text, format);
  EXPECT_TRUE(answer.found) << AnswerFormatName(format) << " found nothing in:\n"
                            << Shown(text);
  EXPECT_EQ(answer.normalized, normalized) << "raw: " << Shown(answer.raw) << "\ntext:\n"
                                           << Shown(text);
}

void ExpectNone(std::string_view text, AnswerFormat format) {
  const ExtractedAnswer answer = ExtractAnswer(text, format);
  EXPECT_FALSE(answer.found) << AnswerFormatName(format) << " found \"" << Shown(answer.raw)
                             << "\" in:\n" << Shown(text);
  EXPECT_EQ(answer.raw, "");
  EXPECT_EQ(answer.normalized, "");
}

constexpr char kGsm8kSolution[] =
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
    "#### 72";

constexpr char kChattyGsm8k[] =
    "Sure! Let's break this down step by step.\n\n"
    "1. Janet's ducks lay 16 eggs per day.\n"
    "2. She eats 3 for breakfast and bakes muffins with 4, so she uses 3 + 4 = 7 eggs.\n"
    "3. She sells 16 - 7 = 9 eggs at $2 each, making 9 * 2 = $18.\n\n"
    "So Janet makes **$18** every day at the farmers' market.\n\n"
    "#### $18.00\n\n"
    "I hope this helps! Let me know if you have any other questions.";

TEST(ExtractGsm8kTest, ReadsTheReferenceSolutionFormat) {
  const ExtractedAnswer answer = ExtractAnswer(kGsm8kSolution, AnswerFormat::kGsm8k);
  EXPECT_TRUE(answer.found);
  EXPECT_EQ(answer.raw, "72");
  EXPECT_EQ(answer.normalized, "72");
}

TEST(ExtractGsm8kTest, NormalisesCurrencyAndIgnoresChatAfterTheAnswerLine) {
  const ExtractedAnswer answer = ExtractAnswer(kChattyGsm8k, AnswerFormat::kGsm8k);
  EXPECT_TRUE(answer.found);
  EXPECT_EQ(answer.raw, "$18.00");
  EXPECT_EQ(answer.normalized, "18");
}

TEST(ExtractGsm8kTest, TakesTheLastOfSeveralAnswerLines) {
  ExpectAnswer("First try:\n#### 15\nWait, I forgot the tax.\n#### 16.50\n",
               AnswerFormat::kGsm8k, "16.5");
  ExpectAnswer("#### 1,200\n#### 1,250", AnswerFormat::kGsm8k, "1250");
}

TEST(ExtractGsm8kTest, MarkdownHeadingsDoNotHideTheNumericAnswer) {
  ExpectAnswer("#### Step 1: count\n3 + 4 = 7\n#### 7\n#### Summary\nWe found 7.",
               AnswerFormat::kGsm8k, "7");
}

TEST(ExtractGsm8kTest, SkipsEmptyMarkersAndHandlesLongerHashRuns) {
  ExpectAnswer("#### 5\nmore text ####\n", AnswerFormat::kGsm8k, "5");
  ExpectAnswer("##### 9", AnswerFormat::kGsm8k, "9");
  ExpectAnswer("The answer:\n####42", AnswerFormat::kGsm8k, "42");
}

TEST(ExtractGsm8kTest, TextAfterAnAnswerMarkerIsTheAnswer) {
  ExpectAnswer("#### The answer is 72.", AnswerFormat::kGsm8k, "72");
}

TEST(ExtractGsm8kTest, NonNumericAnswerIsNormalisedAsText) {
  ExpectAnswer("#### Tuesday", AnswerFormat::kGsm8k, "tuesday");
}

TEST(ExtractGsm8kTest, AnEchoedPlaceholderIsNoAnswer) {
  // A base model repeating the instruction (seen on Gemma 3 270M's synthesis).
  ExpectNone("End your response with a final line of the form \"#### <number>\", where "
             "<number> is the final numeric answer only.",
             AnswerFormat::kGsm8k);
  ExpectAnswer("#### 12\nThe format is \"#### <number>\"", AnswerFormat::kGsm8k, "12");
  ExpectNone("Answer: <your answer>", AnswerFormat::kAnswerLine);
}

TEST(ExtractGsm8kTest, NoMarkerFindsNothing) {
  ExpectNone("She makes 9 * 2 = 18 dollars a day.", AnswerFormat::kGsm8k);
  ExpectNone("", AnswerFormat::kGsm8k);
  ExpectNone("####   \n", AnswerFormat::kGsm8k);
}

TEST(ExtractBoxedTest, MatchesNestedBraces) {
  const ExtractedAnswer answer =
      ExtractAnswer("So the probability is $\\boxed{\\frac{1}{2}}$.", AnswerFormat::kBoxed);
  EXPECT_TRUE(answer.found);
  EXPECT_EQ(answer.raw, "\\frac{1}{2}");
  EXPECT_EQ(answer.normalized, "0.5");
}

TEST(ExtractBoxedTest, TakesTheLastBoxAndAcceptsFbox) {
  ExpectAnswer("First \\boxed{3}, then on reflection \\boxed{4}.", AnswerFormat::kBoxed, "4");
  ExpectAnswer("\\boxed{3} ... \\fbox{5}", AnswerFormat::kBoxed, "5");
  ExpectAnswer("\\fbox{5} ... \\boxed{6}", AnswerFormat::kBoxed, "6");
  ExpectAnswer("The answer is \\boxed{\\text{(B)}}", AnswerFormat::kBoxed, "(b)");
  ExpectAnswer("\\boxed{x^{2} + 1}", AnswerFormat::kBoxed, "x^{2} + 1");
  ExpectAnswer("Hence \\boxed 5$.", AnswerFormat::kBoxed, "5");
}

TEST(ExtractBoxedTest, EmptyBoxesAreSkipped) {
  ExpectAnswer("\\boxed{12} (I was told to use \\boxed{})", AnswerFormat::kBoxed, "12");
}

TEST(ExtractBoxedTest, UnterminatedLastBoxFindsNothing) {
  ExpectNone("\\boxed{3} but actually \\boxed{\\frac{1}{2}", AnswerFormat::kBoxed);
  ExpectNone("no box here: 42", AnswerFormat::kBoxed);
  ExpectNone("\\boxed", AnswerFormat::kBoxed);
}

TEST(ExtractAnswerLineTest, RecognisesCommonMarkers) {
  ExpectAnswer("Reasoning...\nAnswer: 42", AnswerFormat::kAnswerLine, "42");
  ExpectAnswer("Reasoning...\nFinal Answer: 42.", AnswerFormat::kAnswerLine, "42");
  ExpectAnswer("So the answer is 42.", AnswerFormat::kAnswerLine, "42");
  ExpectAnswer("THE ANSWER IS: Paris.", AnswerFormat::kAnswerLine, "paris");
  ExpectAnswer("**Final Answer:** 1,000", AnswerFormat::kAnswerLine, "1000");
  ExpectAnswer("**Answer**: $\\boxed{7}$", AnswerFormat::kAnswerLine, "7");
  ExpectAnswer("The final answer is $\\boxed{18}$. I hope it is correct.",
               AnswerFormat::kAnswerLine, "18");
}

TEST(ExtractAnswerLineTest, NarrowsToTheNumberOrBoxWhenTheLineGoesOn) {
  ExpectAnswer("So the answer is 42. Let me double-check: 6 * 7 = 42.",
               AnswerFormat::kAnswerLine, "42");
  ExpectAnswer("#### 72. That is the total.", AnswerFormat::kGsm8k, "72");
  // A first sentence that is not a number is not cut off.
  ExpectAnswer("Answer: Mr. Smith did it", AnswerFormat::kAnswerLine, "mr. smith did it");
  const ExtractedAnswer boxed =
      ExtractAnswer("The final answer is $\\boxed{18}$. I hope it is correct.",
                    AnswerFormat::kAnswerLine);
  EXPECT_EQ(boxed.raw, "18");
}

TEST(ExtractAnswerLineTest, RawHasMarkdownAndPeriodStripped) {
  const ExtractedAnswer answer =
      ExtractAnswer("blah\n**Final answer: The Eiffel Tower.**", AnswerFormat::kAnswerLine);
  EXPECT_TRUE(answer.found);
  EXPECT_EQ(answer.raw, "The Eiffel Tower");
  EXPECT_EQ(answer.normalized, "the eiffel tower");
}

TEST(ExtractAnswerLineTest, TakesTheLastAnswerLineAndTheLastMarkerInIt) {
  ExpectAnswer("Answer: 3\nHmm, let me recheck.\nAnswer: 4\nDone.", AnswerFormat::kAnswerLine,
               "4");
  ExpectAnswer("Final Answer: The final answer is 9", AnswerFormat::kAnswerLine, "9");
}

TEST(ExtractAnswerLineTest, AnswerOnTheNextLine) {
  ExpectAnswer("Final Answer:\n\n  **12**\n", AnswerFormat::kAnswerLine, "12");
  // An empty answer line does not take the next answer line's marker.
  ExpectAnswer("Answer: 7\nAnswer:\nAnswer:\n", AnswerFormat::kAnswerLine, "7");
}

TEST(ExtractAnswerLineTest, SkipsLinesWithoutAnAnswerAndWordsThatOnlyContainAnswer) {
  ExpectAnswer("Answer: 5\nThat is what the question asks the answer is.",
               AnswerFormat::kAnswerLine, "5");
  ExpectNone("I cannot answer that question.", AnswerFormat::kAnswerLine);
  ExpectNone("The reanswer: 5", AnswerFormat::kAnswerLine);
  ExpectNone("The answer isn't obvious: 5", AnswerFormat::kAnswerLine);
  ExpectNone("Answer:", AnswerFormat::kAnswerLine);
}

TEST(ExtractMultipleChoiceTest, AnswerLineForms) {
  ExpectAnswer("Answer: (B)", AnswerFormat::kMultipleChoice, "B");
  ExpectAnswer("Reasoning.\nthe answer is C.", AnswerFormat::kMultipleChoice, "C");
  ExpectAnswer("Answer: B) Paris", AnswerFormat::kMultipleChoice, "B");
  ExpectAnswer("Answer: **D** because the others are wrong", AnswerFormat::kMultipleChoice,
               "D");
  ExpectAnswer("Final answer: option E", AnswerFormat::kMultipleChoice, "E");
  ExpectAnswer("Answer: b", AnswerFormat::kMultipleChoice, "B");
  ExpectAnswer("Answer: (c)", AnswerFormat::kMultipleChoice, "C");
  ExpectAnswer("Answer: [A]", AnswerFormat::kMultipleChoice, "A");
}

TEST(ExtractMultipleChoiceTest, BoxedAndTrailingForms) {
  ExpectAnswer("Therefore $\\boxed{\\text{C}}$", AnswerFormat::kMultipleChoice, "C");
  ExpectAnswer("Comparing the options, the best one is\n\n**B**", AnswerFormat::kMultipleChoice,
               "B");
  ExpectAnswer("so I pick B)", AnswerFormat::kMultipleChoice, "B");
  ExpectAnswer("The correct choice is (c).", AnswerFormat::kMultipleChoice, "C");
  const ExtractedAnswer answer = ExtractAnswer("...so it is (D).", AnswerFormat::kMultipleChoice);
  EXPECT_EQ(answer.raw, "(D).");
}

TEST(ExtractMultipleChoiceTest, LettersOutsideAToEAndArticlesAreNotChoices) {
  ExpectNone("Answer: F", AnswerFormat::kMultipleChoice);
  ExpectNone("I would buy a", AnswerFormat::kMultipleChoice);
  ExpectNone("The answer depends on the context.", AnswerFormat::kMultipleChoice);
  ExpectNone("Answer: 42", AnswerFormat::kMultipleChoice);
  ExpectNone("", AnswerFormat::kMultipleChoice);
}

TEST(ExtractNumberTest, TakesTheLastNumber) {
  ExpectAnswer("3 apples plus 4 apples make 7 apples.", AnswerFormat::kNumber, "7");
  ExpectAnswer("The total is 1,234.50 dollars.", AnswerFormat::kNumber, "1234.5");
  ExpectAnswer("It drops to -5 degrees.", AnswerFormat::kNumber, "-5");
  ExpectAnswer("We need 3/4 of a cup.", AnswerFormat::kNumber, "0.75");
  ExpectAnswer("The value is .5 exactly", AnswerFormat::kNumber, "0.5");
  ExpectAnswer("It costs $18.", AnswerFormat::kNumber, "18");
  ExpectAnswer("1, 2, 3", AnswerFormat::kNumber, "3");
}

TEST(ExtractNumberTest, SubtractionIsNotANegativeNumber) {
  ExpectAnswer("10-3", AnswerFormat::kNumber, "3");
  ExpectAnswer("(4)-2", AnswerFormat::kNumber, "2");
  ExpectAnswer("x = -2", AnswerFormat::kNumber, "-2");
}

TEST(ExtractNumberTest, DigitsInsideWordsAreNotNumbers) {
  ExpectAnswer("The result is 12 after step2 and H2O", AnswerFormat::kNumber, "12");
  ExpectNone("no digits at all", AnswerFormat::kNumber);
}

TEST(ExtractAutoTest, TriesGsm8kBoxedAnswerLineThenNumber) {
  ExpectAnswer("\\boxed{5}\nAnswer: 6\n#### 7\nand 8", AnswerFormat::kAuto, "7");
  ExpectAnswer("\\boxed{5}\nAnswer: 6\nand 8", AnswerFormat::kAuto, "5");
  ExpectAnswer("Answer: 6\nand 8 more", AnswerFormat::kAuto, "6");
  ExpectAnswer("we get 6 and then 8 more", AnswerFormat::kAuto, "8");
  ExpectAnswer(kChattyGsm8k, AnswerFormat::kAuto, "18");
  ExpectNone("I don't know.", AnswerFormat::kAuto);
}

TEST(ExtractAutoTest, UnterminatedBoxFallsThroughToLaterRules) {
  ExpectAnswer("Answer: 3\n\\boxed{\\frac{1}{", AnswerFormat::kAuto, "3");
}

TEST(ExtractTest, InvalidUtf8AndBinaryNeverCrash) {
  std::string bytes = "Answer: \xFF\xFE\x80 \xC3";
  ExpectAnswer(bytes, AnswerFormat::kAnswerLine, "\xFF\xFE\x80 \xC3");
  std::string noise;
  for (int i = 0; i < 2048; ++i) noise.push_back(static_cast<char>((i * 131 + 7) % 256));
  for (AnswerFormat f : {AnswerFormat::kAuto, AnswerFormat::kGsm8k, AnswerFormat::kBoxed,
                         AnswerFormat::kAnswerLine, AnswerFormat::kMultipleChoice,
                         AnswerFormat::kNumber}) {
    ExtractAnswer(noise, f);
    ExtractAnswer(noise + "#### \xF0\x9F 12", f);
    ExtractAnswer("\\boxed{" + noise, f);
    ExtractAnswer(std::string(1, '\0') + "####", f);
  }
  ExpectAnswer(noise + "\n#### 12", AnswerFormat::kGsm8k, "12");
}

TEST(ExtractTest, LongOutputsAreHandled) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "step " + std::to_string(i) + " #### \\boxed{x}\n";
  text += "#### 31337";
  ExpectAnswer(text, AnswerFormat::kGsm8k, "31337");
  ExpectAnswer(text, AnswerFormat::kBoxed, "x");
}

TEST(ExtractTest, PathologicalInputsStayLinear) {
  // Quadratic scans would take minutes on these.
  std::string boxes = "\\fbox{3}";
  for (int i = 0; i < 100000; ++i) boxes += "\\boxed{}";
  ExpectAnswer(boxes, AnswerFormat::kBoxed, "3");
  std::string hashes;
  for (int i = 0; i < 100000; ++i) hashes += "#### x ";
  ExpectAnswer(hashes, AnswerFormat::kGsm8k, "x");
  std::string answer_lines;
  for (int i = 0; i < 100000; ++i) answer_lines += "Answer:\n";
  ExpectNone(answer_lines, AnswerFormat::kAnswerLine);
  std::string wrapped = "\\boxed{" + std::string(100000, '{');
  for (int i = 0; i < 50000; ++i) wrapped += ".*";
  ExtractAnswer("Answer: " + wrapped, AnswerFormat::kAuto);
}

TEST(AnswerFormatTest, NamesRoundTrip) {
  for (AnswerFormat f : {AnswerFormat::kAuto, AnswerFormat::kGsm8k, AnswerFormat::kBoxed,
                         AnswerFormat::kAnswerLine, AnswerFormat::kMultipleChoice,
                         AnswerFormat::kNumber}) {
    absl::StatusOr<AnswerFormat> parsed = ParseAnswerFormat(AnswerFormatName(f));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_EQ(std::string(AnswerFormatName(AnswerFormat::kAnswerLine)), "answer_line");
  absl::StatusOr<AnswerFormat> upper = ParseAnswerFormat("GSM8K");
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(*upper, AnswerFormat::kGsm8k);
}

TEST(AnswerFormatTest, UnknownNameIsInvalidArgumentNamingIt) {
  absl::StatusOr<AnswerFormat> parsed = ParseAnswerFormat("latex");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("\"latex\""));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("answer_line"));
  EXPECT_FALSE(ParseAnswerFormat("").ok());
}

}  // namespace
}  // namespace conclave::orchestrator
