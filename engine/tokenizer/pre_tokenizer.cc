#include "engine/tokenizer/pre_tokenizer.h"

#include "engine/tokenizer/unicode.h"

namespace conclave::engine {
namespace {

// Splits one word [begin, end) of `cpts`, appending the lengths of the
// resulting pieces to `out`.
class WordSplitter {
 public:
  WordSplitter(const std::vector<uint32_t>& cpts, size_t begin, size_t end,
               std::vector<size_t>* out)
      : cpts_(cpts), begin_(begin), end_(end), emitted_(begin), out_(out) {}

  // \p{N}: every number code point alone, the text between kept whole.
  void SplitDigits() {
    for (size_t pos = begin_; pos < end_; ++pos) {
      if (Flags(pos) & kCpNumber) {
        EmitUntil(pos);
        EmitUntil(pos + 1);
      }
    }
    EmitUntil(end_);
  }

  void SplitGpt2() {
    size_t pos = begin_;
    while (pos < end_) {
      const uint32_t c = cpts_[pos];
      // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
      if (c == '\'' && pos + 1 < end_) {
        const uint32_t n1 = cpts_[pos + 1];
        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
          pos += 2;
          EmitUntil(pos);
          continue;
        }
        if (pos + 2 < end_) {
          const uint32_t n2 = cpts_[pos + 2];
          if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
              (n1 == 'l' && n2 == 'l')) {
            pos += 3;
            EmitUntil(pos);
            continue;
          }
        }
      }
      // The optional leading space of the next three alternatives: classify
      // by the code point after it.
      const size_t body = c == ' ' ? pos + 1 : pos;
      const uint16_t f = Flags(body);
      if (f & kCpLetter) {  //  ?\p{L}+
        pos = SkipWhile(body, [](uint16_t g) { return (g & kCpLetter) != 0; });
        EmitUntil(pos);
        continue;
      }
      if (f & kCpNumber) {  //  ?\p{N}+
        pos = SkipWhile(body, [](uint16_t g) { return (g & kCpNumber) != 0; });
        EmitUntil(pos);
        continue;
      }
      if (IsOther(f)) {  //  ?[^\s\p{L}\p{N}]+
        pos = SkipWhile(body, IsOther);
        EmitUntil(pos);
        continue;
      }
      const size_t ws_end =
          SkipWhile(pos, [](uint16_t g) { return (g & kCpWhitespace) != 0; });
      const size_t num_ws = ws_end - pos;
      if (num_ws > 1 && ws_end < end_) {
        // \s+(?!\S): leave the last whitespace to start the next word.
        pos = ws_end - 1;
        EmitUntil(pos);
        continue;
      }
      pos = num_ws > 0 ? ws_end : pos + 1;  // \s+, or a lone unmatched cpt
      EmitUntil(pos);
    }
    EmitUntil(end_);
  }

 private:
  // Flags of the code point at `pos`, 0 outside the word (so nothing matches
  // across its edges).
  uint16_t Flags(size_t pos) const {
    return pos >= begin_ && pos < end_ ? CodepointFlags(cpts_[pos]) : 0;
  }

  static bool IsOther(uint16_t f) {
    return f != 0 && (f & (kCpWhitespace | kCpLetter | kCpNumber)) == 0;
  }

  template <typename Pred>
  size_t SkipWhile(size_t pos, Pred pred) const {
    while (pos < end_ && pred(Flags(pos))) ++pos;
    return pos;
  }

  void EmitUntil(size_t pos) {
    if (pos > emitted_) out_->push_back(pos - emitted_);
    emitted_ = pos;
  }

  const std::vector<uint32_t>& cpts_;
  const size_t begin_;
  const size_t end_;
  size_t emitted_;
  std::vector<size_t>* out_;
};

}  // namespace

std::vector<size_t> SplitCodepoints(const std::vector<uint32_t>& cpts,
                                    const std::vector<PreTokenizeStep>& steps) {
  std::vector<size_t> words;
  if (!cpts.empty()) words.push_back(cpts.size());
  for (PreTokenizeStep step : steps) {
    std::vector<size_t> next;
    next.reserve(words.size());
    size_t begin = 0;
    for (size_t len : words) {
      WordSplitter splitter(cpts, begin, begin + len, &next);
      if (step == PreTokenizeStep::kDigits) {
        splitter.SplitDigits();
      } else {
        splitter.SplitGpt2();
      }
      begin += len;
    }
    words = std::move(next);
  }
  return words;
}

std::vector<std::string> PreTokenize(std::string_view text,
                                     const std::vector<PreTokenizeStep>& steps) {
  const std::vector<uint32_t> cpts = DecodeUtf8All(text);
  const std::vector<size_t> lengths = SplitCodepoints(cpts, steps);
  std::vector<std::string> words;
  words.reserve(lengths.size());
  size_t begin = 0;
  std::string utf8;
  for (size_t len : lengths) {
    utf8.clear();
    for (size_t i = begin; i < begin + len; ++i) AppendUtf8(cpts[i], &utf8);
    std::string encoded;
    encoded.reserve(utf8.size() * 2);
    for (char ch : utf8) encoded += ByteToUnicode(static_cast<uint8_t>(ch));
    words.push_back(std::move(encoded));
    begin += len;
  }
  return words;
}

}  // namespace conclave::engine
