#include "engine/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "engine/tokenizer/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::engine {
namespace {

using ::testing::ElementsAre;

// Splits `text` with the smollm steps and returns the words as UTF-8.
std::vector<std::string> Words(const std::string& text) {
  const std::vector<uint32_t> cpts = DecodeUtf8All(text);
  std::vector<std::string> words;
  size_t begin = 0;
  for (size_t len : SplitCodepoints(cpts, {PreTokenizeStep::kDigits,
                                           PreTokenizeStep::kGpt2})) {
    std::string w;
    for (size_t i = begin; i < begin + len; ++i) AppendUtf8(cpts[i], &w);
    words.push_back(w);
    begin += len;
  }
  return words;
}

TEST(UnicodeTest, ClassifiesLikeTheGeneralCategory) {
  EXPECT_TRUE(CodepointFlags('a') & kCpLetter);
  EXPECT_TRUE(CodepointFlags(0x4E2D) & kCpLetter);        // 中
  EXPECT_TRUE(CodepointFlags('7') & kCpNumber);
  EXPECT_TRUE(CodepointFlags(0x00BD) & kCpNumber);        // ½ (No)
  EXPECT_TRUE(CodepointFlags(0x0301) & kCpAccentMark);    // combining acute
  EXPECT_TRUE(CodepointFlags('!') & kCpPunctuation);
  EXPECT_TRUE(CodepointFlags('+') & kCpSymbol);
  EXPECT_TRUE(CodepointFlags(0x1F600) & kCpSymbol);       // 😀
  EXPECT_TRUE(CodepointFlags(0x00A0) & kCpWhitespace);
  EXPECT_TRUE(CodepointFlags('\n') & kCpWhitespace);
  EXPECT_FALSE(CodepointFlags(0x200B) & kCpWhitespace);   // zero width space
  EXPECT_EQ(CodepointFlags(0x0378), kCpUndefined);        // unassigned
  EXPECT_EQ(CodepointFlags(0x110000), 0);
}

TEST(UnicodeTest, DecodesInvalidBytesAsReplacementOneByteAtATime) {
  EXPECT_THAT(DecodeUtf8All("a\xFF\xE4\xB8"),
              ElementsAre('a', kReplacementCharacter, kReplacementCharacter,
                          kReplacementCharacter));
  EXPECT_THAT(DecodeUtf8All("\xE4\xB8\xAD"), ElementsAre(0x4E2D));
  EXPECT_THAT(DecodeUtf8All("\xF4\x90\x80\x80"),  // past U+10FFFF
              ElementsAre(kReplacementCharacter, kReplacementCharacter,
                          kReplacementCharacter, kReplacementCharacter));
}

TEST(UnicodeTest, ByteAlphabetIsABijection) {
  for (int b = 0; b < 256; ++b) {
    size_t offset = 0;
    const std::string& s = ByteToUnicode(static_cast<uint8_t>(b));
    EXPECT_EQ(UnicodeToByte(DecodeUtf8(s, &offset)), b);
  }
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");  // Ġ
  EXPECT_EQ(ByteToUnicode('a'), "a");
}

TEST(PreTokenizerTest, SplitsWordsWithTheirLeadingSpace) {
  EXPECT_THAT(Words("Hello world!"), ElementsAre("Hello", " world", "!"));
}

TEST(PreTokenizerTest, SplitsEveryDigit) {
  EXPECT_THAT(Words("a 123"), ElementsAre("a", " ", "1", "2", "3"));
}

TEST(PreTokenizerTest, KeepsTheLastSpaceOfARunForTheNextWord) {
  EXPECT_THAT(Words("a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Words("a   "), ElementsAre("a", "   "));
}

TEST(PreTokenizerTest, SplitsLowercaseContractionsOnly) {
  EXPECT_THAT(Words("it's"), ElementsAre("it", "'s"));
  EXPECT_THAT(Words("IT'S"), ElementsAre("IT", "'", "S"));
}

TEST(PreTokenizerTest, GroupsPunctuationAndSymbols) {
  EXPECT_THAT(Words("x += 1;"), ElementsAre("x", " +=", " ", "1", ";"));
}

TEST(PreTokenizerTest, ByteEncodesTheWords) {
  EXPECT_THAT(PreTokenize(" \xC3\xA9", {PreTokenizeStep::kGpt2}),
              ElementsAre("\xC4\xA0\xC3\x83\xC2\xA9"));  // "Ġ" + bytes C3 A9
}

}  // namespace
}  // namespace conclave::engine
