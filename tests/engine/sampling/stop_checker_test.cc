#include "engine/sampling/stop_checker.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/model/gguf_reader.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/gguf_writer.h"

namespace conclave::engine {
namespace {

using ::testing::HasSubstr;

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD
const std::string kEAcute = "\xC3\xA9";          // é
const std::string kSmile = "\xF0\x9F\x99\x82";   // 🙂

// A tiny SentencePiece-style vocabulary: byte tokens that split "é" and "🙂"
// across tokens, and short words that stop strings can span.
enum Id : int32_t {
  kUnk, kBos, kEos,
  kC3, kA9, kF0, k9F, k99, k82, kFF,  // byte tokens <0xXX>
  kHello, kWorld, kEN, kD, kEND, kBang, kX, kY, kEAcuteToken,
  kA, kB, kC, kDLower, kABCD,
  kVocabSize
};

std::unique_ptr<Tokenizer> TinyTokenizer() {
  const std::vector<std::pair<std::string, int32_t>> tokens = {
      {"<unk>", 2}, {"<s>", 3}, {"</s>", 3},
      {"<0xC3>", 6}, {"<0xA9>", 6}, {"<0xF0>", 6}, {"<0x9F>", 6}, {"<0x99>", 6},
      {"<0x82>", 6}, {"<0xFF>", 6},
      {"Hello", 1}, {"\xE2\x96\x81world", 1}, {"EN", 1}, {"D", 1}, {"END", 1}, {"!", 1},
      {"x", 1}, {"y", 1}, {kEAcute, 1},
      {"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}, {"abcd", 1},
  };
  std::vector<std::string> texts;
  std::vector<int32_t> types;
  for (const auto& [text, type] : tokens) {
    texts.push_back(text);
    types.push_back(type);
  }
  testing::GgufWriter w;
  w.AddString("tokenizer.ggml.model", "llama");
  w.AddStringArray("tokenizer.ggml.tokens", texts);
  w.AddArray<int32_t>("tokenizer.ggml.token_type", types);
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::FromBytes(w.Build());
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromGguf(**file);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

class StopCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = TinyTokenizer();
    ASSERT_NE(tok_, nullptr);
    ASSERT_EQ(tok_->vocab_size(), kVocabSize);
    ASSERT_EQ(tok_->TokenPiece(kWorld), " world");
    ASSERT_EQ(tok_->TokenPiece(kC3), "\xC3");
  }

  // The deltas of appending `ids` one by one.
  std::vector<std::string> Deltas(StopChecker& c, const std::vector<int32_t>& ids) {
    std::vector<std::string> out;
    for (int32_t id : ids) out.push_back(c.Append(id).text);
    return out;
  }

  std::unique_ptr<Tokenizer> tok_;
};

using ::testing::ElementsAre;

TEST_F(StopCheckerTest, EmitsEachTokensTextAtOnceWithoutStopStrings) {
  StopChecker c(*tok_, {});
  EXPECT_THAT(Deltas(c, {kHello, kWorld, kBang}), ElementsAre("Hello", " world", "!"));
  EXPECT_EQ(c.text(), "Hello world!");
  EXPECT_EQ(c.held_bytes(), 0u);
  EXPECT_EQ(c.Flush(), "");
}

TEST_F(StopCheckerTest, HoldsBackACharacterSplitAcrossTokensUntilItIsComplete) {
  StopChecker c(*tok_, {});
  EXPECT_THAT(Deltas(c, {kHello, kC3}), ElementsAre("Hello", ""));
  EXPECT_EQ(c.held_bytes(), 1u);
  EXPECT_THAT(Deltas(c, {kA9}), ElementsAre(kEAcute));
  EXPECT_THAT(Deltas(c, {kF0, k9F, k99, k82, kBang}), ElementsAre("", "", "", kSmile, "!"));
  EXPECT_EQ(c.text(), "Hello" + kEAcute + kSmile + "!");
}

TEST_F(StopCheckerTest, ReplacesBytesThatCanNeverFormACharacterAtOnce) {
  StopChecker c(*tok_, {});
  EXPECT_THAT(Deltas(c, {kFF}), ElementsAre(kReplacement));
  EXPECT_THAT(Deltas(c, {kA9}), ElementsAre(kReplacement));  // stray continuation byte
  // A lead byte followed by a non-continuation: one U+FFFD, then the byte.
  EXPECT_THAT(Deltas(c, {kC3, kX}), ElementsAre("", kReplacement + "x"));
  // A maximal subpart of three bytes is one U+FFFD.
  EXPECT_THAT(Deltas(c, {kF0, k9F, k99, kY}), ElementsAre("", "", "", kReplacement + "y"));
  EXPECT_EQ(c.text(), kReplacement + kReplacement + kReplacement + "x" + kReplacement + "y");
}

TEST_F(StopCheckerTest, FlushTurnsAnIncompleteTrailingCharacterIntoOneReplacementCharacter) {
  StopChecker c(*tok_, {});
  EXPECT_THAT(Deltas(c, {kX, kF0, k9F, k99}), ElementsAre("x", "", "", ""));
  EXPECT_EQ(c.Flush(), kReplacement);
  EXPECT_EQ(c.text(), "x" + kReplacement);
  EXPECT_FALSE(c.stopped());
}

TEST_F(StopCheckerTest, AStopStringSpanningTokensEndsTheTextBeforeIt) {
  StopChecker c(*tok_, {"END"});
  EXPECT_EQ(c.Append(kHello).text, "Hello");
  TextDelta d = c.Append(kEN);
  EXPECT_EQ(d.text, "");  // "EN" may still become "END"
  EXPECT_FALSE(d.stopped);
  EXPECT_EQ(c.held_bytes(), 2u);
  d = c.Append(kD);
  EXPECT_EQ(d.text, "");
  EXPECT_TRUE(d.stopped);
  EXPECT_TRUE(c.stopped());
  EXPECT_EQ(c.text(), "Hello");
}

TEST_F(StopCheckerTest, ReleasesAHeldPrefixOnceItCannotBecomeAStopString) {
  StopChecker c(*tok_, {"END"});
  EXPECT_THAT(Deltas(c, {kEN, kX, kEN}), ElementsAre("", "ENx", ""));
  EXPECT_EQ(c.Flush(), "EN");
  EXPECT_EQ(c.text(), "ENxEN");
  EXPECT_FALSE(c.stopped());
}

TEST_F(StopCheckerTest, EmitsTheTextBeforeAStopStringInsideOneToken) {
  StopChecker c(*tok_, {"lo"});
  const TextDelta d = c.Append(kHello);
  EXPECT_EQ(d.text, "Hel");
  EXPECT_TRUE(d.stopped);
}

TEST_F(StopCheckerTest, NothingComesAfterAStop) {
  StopChecker c(*tok_, {"!"});
  EXPECT_EQ(c.Append(kHello).text, "Hello");
  EXPECT_TRUE(c.Append(kBang).stopped);
  const TextDelta later = c.Append(kWorld);
  EXPECT_EQ(later.text, "");
  EXPECT_FALSE(later.stopped);
  EXPECT_EQ(c.Flush(), "");
  EXPECT_EQ(c.text(), "Hello");
}

TEST_F(StopCheckerTest, NothingComesAfterFlush) {
  StopChecker c(*tok_, {});
  c.Append(kHello);
  EXPECT_EQ(c.Flush(), "");
  EXPECT_EQ(c.Append(kWorld).text, "");
  EXPECT_EQ(c.text(), "Hello");
}

TEST_F(StopCheckerTest, MatchesAStopStringMadeOfASplitCharacterWhateverTheTokenization) {
  for (const std::vector<int32_t>& ids : std::vector<std::vector<int32_t>>{
           {kX, kC3, kA9, kBang}, {kX, kEAcuteToken, kBang}}) {
    StopChecker c(*tok_, {kEAcute + "!"});
    std::string streamed;
    bool stopped = false;
    for (int32_t id : ids) {
      const TextDelta d = c.Append(id);
      streamed += d.text;
      stopped = stopped || d.stopped;
    }
    EXPECT_TRUE(stopped);
    EXPECT_EQ(streamed, "x");
    EXPECT_EQ(c.text(), "x");
  }
}

TEST_F(StopCheckerTest, TheFirstStopStringToCompleteWinsWhateverTheTokenization) {
  // "bc" completes before "abcd" does, whether the text comes as one token
  // or four.
  for (const std::vector<int32_t>& ids :
       std::vector<std::vector<int32_t>>{{kA, kB, kC, kDLower}, {kABCD}}) {
    StopChecker c(*tok_, {"abcd", "bc"});
    for (int32_t id : ids) c.Append(id);
    EXPECT_TRUE(c.stopped());
    EXPECT_EQ(c.text(), "a");
  }
}

TEST_F(StopCheckerTest, OfStopStringsCompletingOnTheSameByteTheLongestWins) {
  StopChecker c(*tok_, {"cd", "bcd"});
  const TextDelta d = c.Append(kABCD);
  EXPECT_TRUE(d.stopped);
  EXPECT_EQ(d.text, "a");
}

TEST_F(StopCheckerTest, HoldsBackOnlyTheLongestSuffixThatCanStartAStopString) {
  // After "xxx" only "xx" can still start "xxy"; the first x is final.
  StopChecker c(*tok_, {"xxy"});
  EXPECT_THAT(Deltas(c, {kX, kX, kX}), ElementsAre("", "", "x"));
  EXPECT_EQ(c.held_bytes(), 2u);
  const TextDelta d = c.Append(kY);
  EXPECT_TRUE(d.stopped);
  EXPECT_EQ(c.text(), "x");
}

TEST_F(StopCheckerTest, FlushCanCompleteAStopStringEndingInAReplacementCharacter) {
  StopChecker c(*tok_, {"x" + kReplacement});
  EXPECT_THAT(Deltas(c, {kHello, kX, kC3}), ElementsAre("Hello", "", ""));
  EXPECT_EQ(c.Flush(), "");
  EXPECT_TRUE(c.stopped());
  EXPECT_EQ(c.text(), "Hello");
}

TEST_F(StopCheckerTest, ControlTokensRenderAsTheirText) {
  StopChecker c(*tok_, {});
  EXPECT_EQ(c.Append(kEos).text, "</s>");
}

// The reference for the randomized test: the whole text so far, and what of
// it may be emitted, by brute force over every stop string and suffix.
struct Reference {
  std::string emitted;  // final text up to the cut
  bool stopped = false;
};

// Bytes of `s` minus a trailing incomplete UTF-8 character (the streams
// below are valid UTF-8 apart from that).
std::string WithoutIncompleteTail(const std::string& s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const unsigned char b = s[s.size() - back];
    if ((b & 0xC0) == 0x80) continue;  // continuation: look further back
    const size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    return len > back ? s.substr(0, s.size() - back) : s;
  }
  return s;
}

Reference Expected(const std::string& stream, const std::vector<std::string>& stops,
                   bool final) {
  const std::string text = final ? stream : WithoutIncompleteTail(stream);
  // The first end position where a stop string is complete; the longest there.
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t longest = 0;
    for (const std::string& s : stops) {
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        longest = std::max(longest, s.size());
      }
    }
    if (longest > 0) return {text.substr(0, end - longest), true};
  }
  if (final) return {text, false};
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t k = 1; k < s.size() && k <= text.size(); ++k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) hold = std::max(hold, k);
    }
  }
  return {text.substr(0, text.size() - hold), false};
}

TEST_F(StopCheckerTest, StreamsExactlyWhatABruteForceReferenceAllowsOnRandomTokenSequences) {
  // Units keep the whole stream valid UTF-8; tokens inside a unit split
  // characters.
  const std::vector<std::vector<int32_t>> units = {
      {kA}, {kB}, {kC}, {kDLower}, {kABCD}, {kX}, {kY}, {kBang}, {kEN}, {kD}, {kEND},
      {kC3, kA9}, {kEAcuteToken}, {kF0, k9F, k99, k82}};
  const std::vector<std::string> alphabet = {"a", "b", "c", "d", "x", "!", kEAcute, kSmile};
  std::mt19937_64 gen(5);
  int stopped_trials = 0, held_steps = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<std::string> stops;
    const int n_stops = std::uniform_int_distribution<int>(0, 4)(gen);
    for (int i = 0; i < n_stops; ++i) {
      std::string s;
      const int len = std::uniform_int_distribution<int>(1, 4)(gen);
      for (int j = 0; j < len; ++j) {
        s += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(gen)];
      }
      stops.push_back(s);
    }
    std::vector<int32_t> ids;
    const int n_units = std::uniform_int_distribution<int>(1, 30)(gen);
    for (int i = 0; i < n_units; ++i) {
      const auto& u = units[std::uniform_int_distribution<size_t>(0, units.size() - 1)(gen)];
      ids.insert(ids.end(), u.begin(), u.end());
    }

    StopChecker c(*tok_, stops);
    std::string stream, streamed;
    bool stopped = false;
    for (int32_t id : ids) {
      stream += tok_->TokenPiece(id);
      const TextDelta d = c.Append(id);
      streamed += d.text;
      const Reference ref = Expected(stream, stops, /*final=*/false);
      ASSERT_EQ(streamed, ref.emitted) << "trial " << trial;
      ASSERT_EQ(d.stopped, ref.stopped && !stopped) << "trial " << trial;
      if (c.held_bytes() > 0) ++held_steps;
      stopped = ref.stopped;
      if (stopped) break;
    }
    streamed += c.Flush();
    const Reference ref = Expected(stream, stops, /*final=*/true);
    EXPECT_EQ(streamed, ref.emitted) << "trial " << trial;
    EXPECT_EQ(c.text(), streamed);
    EXPECT_EQ(c.stopped(), ref.stopped);
    stopped_trials += ref.stopped;
  }
  // Both outcomes, and held-back text, are well represented.
  EXPECT_GT(stopped_trials, 100);
  EXPECT_LT(stopped_trials, 300);
  EXPECT_GT(held_steps, 100);
}

TEST(ValidateStopStringsTest, AcceptsUpToSixteenStringsOfUpTo256Bytes) {
  EXPECT_TRUE(ValidateStopStrings({}).ok());
  EXPECT_TRUE(ValidateStopStrings(std::vector<std::string>(16, std::string(256, 'x'))).ok());
  EXPECT_TRUE(ValidateStopStrings({kSmile, "\n\n"}).ok());
}

TEST(ValidateStopStringsTest, MessagesNameTheOffendingStringAndTheLimit) {
  const auto message = [](const std::vector<std::string>& stop) {
    const absl::Status s = ValidateStopStrings(stop);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EXPECT_EQ(message(std::vector<std::string>(17, "x")),
            "stop has 17 strings; at most 16 are allowed");
  EXPECT_EQ(message({"ok", ""}), "stop[1] is 0 bytes; each stop string must be 1..256 bytes");
  EXPECT_EQ(message({std::string(257, 'x')}),
            "stop[0] is 257 bytes; each stop string must be 1..256 bytes");
  EXPECT_EQ(message({"ok", "fine", "caf\xC3"}), "stop[2] is not valid UTF-8");
  EXPECT_THAT(message({"\xED\xA0\x80"}), HasSubstr("not valid UTF-8"));  // a surrogate
}

TEST(StopCheckerDeathTest, RefusesUnvalidatedStopStrings) {
  std::unique_ptr<Tokenizer> tok = TinyTokenizer();
  ASSERT_NE(tok, nullptr);
  EXPECT_DEATH(StopChecker(*tok, {""}), "stop\\[0\\] is 0 bytes");
}

}  // namespace
}  // namespace conclave::engine
