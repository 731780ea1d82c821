#include "orchestrator/answer/normalize.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::Eq;
using ::testing::Optional;

TEST(NormalizeNumberTest, ThousandsCurrencyAndTrailingZerosNormaliseEqual) {
  EXPECT_THAT(NormalizeNumber("1234"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("1,234"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("1,234.0"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("$1234"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("$1,234.00"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("1,234,567"), Optional(Eq("1234567")));
}

TEST(NormalizeNumberTest, StripsUnitsPercentAndCurrencyWords) {
  EXPECT_THAT(NormalizeNumber("$18"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18 dollars"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18%"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18 %"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18\\%"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18 cm"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18cm"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("60 km/h"), Optional(Eq("60")));
  EXPECT_THAT(NormalizeNumber("12 cm^2"), Optional(Eq("12")));
  EXPECT_THAT(NormalizeNumber("90^\\circ"), Optional(Eq("90")));
  EXPECT_THAT(NormalizeNumber("90\xC2\xB0"), Optional(Eq("90")));  // 90°
  EXPECT_THAT(NormalizeNumber("5\\text{ apples}"), Optional(Eq("5")));
  EXPECT_THAT(NormalizeNumber("\\$18.50"), Optional(Eq("18.5")));
  EXPECT_THAT(NormalizeNumber("\xE2\x82\xAC" "30"), Optional(Eq("30")));  // €30
}

TEST(NormalizeNumberTest, CanonicalDecimalsAndSigns) {
  EXPECT_THAT(NormalizeNumber("18.0"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("18.00"), Optional(Eq("18")));
  EXPECT_THAT(NormalizeNumber("0.50"), Optional(Eq("0.5")));
  EXPECT_THAT(NormalizeNumber(".5"), Optional(Eq("0.5")));
  EXPECT_THAT(NormalizeNumber("007"), Optional(Eq("7")));
  EXPECT_THAT(NormalizeNumber("+7"), Optional(Eq("7")));
  EXPECT_THAT(NormalizeNumber("-7"), Optional(Eq("-7")));
  EXPECT_THAT(NormalizeNumber("- 7"), Optional(Eq("-7")));
  EXPECT_THAT(NormalizeNumber("\xE2\x88\x92" "7"), Optional(Eq("-7")));  // U+2212
  EXPECT_THAT(NormalizeNumber("-$5"), Optional(Eq("-5")));
  EXPECT_THAT(NormalizeNumber("$-5"), Optional(Eq("-5")));
  EXPECT_THAT(NormalizeNumber("-0"), Optional(Eq("0")));
  EXPECT_THAT(NormalizeNumber("-0.000"), Optional(Eq("0")));
  EXPECT_THAT(NormalizeNumber("3.14159"), Optional(Eq("3.14159")));
  EXPECT_THAT(NormalizeNumber("123456789012345678901234567890"),
              Optional(Eq("123456789012345678901234567890")));
}

TEST(NormalizeNumberTest, FractionsBecomeDecimalsOnlyWhenTheyTerminateWithinSixPlaces) {
  EXPECT_THAT(NormalizeNumber("3/4"), Optional(Eq("0.75")));
  EXPECT_THAT(NormalizeNumber("6/8"), Optional(Eq("0.75")));
  EXPECT_THAT(NormalizeNumber("3 / 4"), Optional(Eq("0.75")));
  EXPECT_THAT(NormalizeNumber("\\frac{3}{4}"), Optional(Eq("0.75")));
  EXPECT_THAT(NormalizeNumber("\\dfrac{3}{4}"), Optional(Eq("0.75")));
  EXPECT_THAT(NormalizeNumber("\\tfrac{1}{2}"), Optional(Eq("0.5")));
  EXPECT_THAT(NormalizeNumber("\\frac{8}{2}"), Optional(Eq("4")));
  EXPECT_THAT(NormalizeNumber("1/64"), Optional(Eq("0.015625")));
  EXPECT_THAT(NormalizeNumber("1/128"), Optional(Eq("1/128")));  // 7 places
  EXPECT_THAT(NormalizeNumber("1/3"), Optional(Eq("1/3")));
  EXPECT_THAT(NormalizeNumber("2/6"), Optional(Eq("1/3")));
  EXPECT_THAT(NormalizeNumber("\\frac{2}{6}"), Optional(Eq("1/3")));
  EXPECT_THAT(NormalizeNumber("-\\frac{3}{4}"), Optional(Eq("-0.75")));
  EXPECT_THAT(NormalizeNumber("\\frac{-3}{4}"), Optional(Eq("-0.75")));
  EXPECT_THAT(NormalizeNumber("\\frac{-1}{-3}"), Optional(Eq("1/3")));
  EXPECT_THAT(NormalizeNumber("-2/6"), Optional(Eq("-1/3")));
  EXPECT_THAT(NormalizeNumber("0/5"), Optional(Eq("0")));
  EXPECT_THAT(NormalizeNumber("2 1/2"), Optional(Eq("2.5")));
  EXPECT_THAT(NormalizeNumber("1 1/3 cups"), Optional(Eq("4/3")));
  EXPECT_THAT(NormalizeNumber("$\\frac{1}{2}$"), Optional(Eq("0.5")));
}

TEST(NormalizeNumberTest, DecorationsAroundTheNumberAreDropped) {
  EXPECT_THAT(NormalizeNumber("  42  "), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("42."), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("**42**"), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("$42$"), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("$$42$$"), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("\\(42\\)"), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("\\boxed{42}"), Optional(Eq("42")));
  EXPECT_THAT(NormalizeNumber("$\\boxed{1{,}234}$."), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("1\\,234"), Optional(Eq("1234")));
  EXPECT_THAT(NormalizeNumber("x = 5"), Optional(Eq("5")));
  EXPECT_THAT(NormalizeNumber("`12`"), Optional(Eq("12")));
}

TEST(NormalizeNumberTest, RejectsWhatIsNotOneNumber) {
  EXPECT_EQ(NormalizeNumber(""), std::nullopt);
  EXPECT_EQ(NormalizeNumber("   "), std::nullopt);
  EXPECT_EQ(NormalizeNumber("Paris"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("3 and 4"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("5 apples and 3 oranges"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("1/0"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("\\frac{1}{0}"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("1e5"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("12,34"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("1234,567"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("3x"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("2\\pi"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("2\\sqrt{3}"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("x + 1"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("--5"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("2 3/2"), std::nullopt);  // not a proper mixed number
  EXPECT_EQ(NormalizeNumber("1234567890123456789/2"), std::nullopt);  // 19 digits
  // A mixed number whose improper numerator has 19 digits (fuzz/corpus/
  // answer_extraction_fuzz/regress_mixed_number_19_digits).
  EXPECT_EQ(NormalizeNumber("2 1/699999999999999999"), std::nullopt);
  EXPECT_EQ(NormalizeNumber("\\frac12"), std::nullopt);
}

TEST(NormalizeNumberTest, EveryCanonicalFormNormalisesToItself) {
  for (const char* text : {"2 1/2", "1 1/3 cups", "2 1/69999999999999999", "-\\frac{4}{2}",
                           "1/128", "-2/6", "$1,234.50", "007", "-0.000", ".5",
                           "999999999999999999/7"}) {
    const std::optional<std::string> canonical = NormalizeNumber(text);
    ASSERT_TRUE(canonical.has_value()) << text;
    EXPECT_THAT(NormalizeNumber(*canonical), Optional(Eq(*canonical))) << text;
  }
}

TEST(NormalizeTextTest, TrimsCollapsesLowercasesAndDropsMathAndPeriod) {
  EXPECT_EQ(NormalizeText("  The  Eiffel\tTower. "), "the eiffel tower");
  EXPECT_EQ(NormalizeText("$x^2 + 1$"), "x^2 + 1");
  EXPECT_EQ(NormalizeText("**Tuesday**"), "tuesday");
  EXPECT_EQ(NormalizeText("\\text{Tuesday}"), "tuesday");
  EXPECT_EQ(NormalizeText("\\text{a} + \\text{b}"), "\\text{a} + \\text{b}");
  EXPECT_EQ(NormalizeText(""), "");
  EXPECT_EQ(NormalizeText("..."), "");
  // Non-ASCII bytes pass through untouched (not lower-cased, not decoded).
  EXPECT_EQ(NormalizeText("\xC3\x89T\xC3\x89"), "\xC3\x89t\xC3\x89");
}

TEST(NormalizeAnswerTest, NumbersWinOverText) {
  EXPECT_EQ(NormalizeAnswer("$1,234.00"), "1234");
  EXPECT_EQ(NormalizeAnswer("Forty Two."), "forty two");
  EXPECT_EQ(NormalizeAnswer("1/0"), "1/0");
}

TEST(StripAnswerDecorationsTest, UnwrapsOnlyWholeStringWrappers) {
  EXPECT_EQ(StripAnswerDecorations("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");
  EXPECT_EQ(StripAnswerDecorations("\\fbox{7}"), "7");
  EXPECT_EQ(StripAnswerDecorations("$\\boxed{7}$."), "7");
  EXPECT_EQ(StripAnswerDecorations("** 18"), "18");
  EXPECT_EQ(StripAnswerDecorations("__x__"), "x");
  EXPECT_EQ(StripAnswerDecorations("$18"), "$18");  // currency, not math
  EXPECT_EQ(StripAnswerDecorations("\\boxed{1} and \\boxed{2}"), "\\boxed{1} and \\boxed{2}");
}

TEST(FindClosingBraceTest, CountsNestingAndSkipsEscapedBraces) {
  EXPECT_EQ(FindClosingBrace("{a{b}c}d", 0), 6u);
  EXPECT_EQ(FindClosingBrace("{\\{}", 0), 3u);
  EXPECT_EQ(FindClosingBrace("{a{b}", 0), std::string_view::npos);
  EXPECT_EQ(FindClosingBrace("a{b}", 0), std::string_view::npos);
  EXPECT_EQ(FindClosingBrace("{", 5), std::string_view::npos);
}

TEST(NormalizeTest, ArbitraryBytesNeverCrash) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  for (size_t start = 0; start < bytes.size(); start += 7) {
    const std::string piece = bytes.substr(start, 40);
    NormalizeAnswer(piece);
    NormalizeNumber("1" + piece);
    StripAnswerDecorations("\\boxed{" + piece);
  }
  EXPECT_EQ(NormalizeText("\xFF\xFE A"), "\xFF\xFE a");
}

}  // namespace
}  // namespace conclave::orchestrator
