// Fuzzes answer extraction and normalisation (orchestrator/answer/) on any
// text, invalid UTF-8 included. For every AnswerFormat:
//   - nothing found means raw and normalized are both empty;
//   - a found answer's raw is a substring of the text ("as written") and
//     normalized is non-empty: NormalizeAnswer(raw), or for multiple choice
//     one letter A-E;
//   - kAuto gives what the first of gsm8k, boxed, answer_line, number finds.
// And for the normalisers: NormalizeNumber's result is canonical (an
// optional '-', an integer without leading zeros, an optional decimal part
// without trailing zeros, or a reduced "p/q") and a fixed point of
// NormalizeNumber; NormalizeText leaves no upper-case ASCII and no ASCII
// whitespace but single spaces; FindClosingBrace points at a '}'.
// Seeds: corpus/answer_extraction_fuzz/; dictionary: answer_extraction_fuzz.dict.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "orchestrator/answer/extract.h"
#include "orchestrator/answer/normalize.h"

namespace {

using conclave::orchestrator::AnswerFormat;
using conclave::orchestrator::AnswerFormatName;
using conclave::orchestrator::ExtractAnswer;
using conclave::orchestrator::ExtractedAnswer;

[[noreturn]] void Fail(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "answer_extraction_fuzz: %.*s [%.*s]\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// -?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?
bool IsCanonicalDecimal(std::string_view s) {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  const size_t dot = s.find('.');
  const std::string_view integer = s.substr(0, dot);
  if (integer.empty() || (integer.size() > 1 && integer.front() == '0')) return false;
  for (char c : integer) {
    if (!IsDigit(c)) return false;
  }
  if (dot == std::string_view::npos) return true;
  const std::string_view fraction = s.substr(dot + 1);
  if (fraction.empty() || fraction.back() == '0') return false;
  for (char c : fraction) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// -?p/q with p, q canonical positive integers, q > 1.
bool IsCanonicalFraction(std::string_view s) {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view p = s.substr(0, slash);
  const std::string_view q = s.substr(slash + 1);
  return IsCanonicalDecimal(p) && IsCanonicalDecimal(q) && p.find('.') == p.npos &&
         q.find('.') == q.npos && p != "0" && q != "0" && q != "1";
}

void CheckAnswer(std::string_view text, AnswerFormat format, const ExtractedAnswer& a) {
  const std::string_view name = AnswerFormatName(format);
  if (!a.found) {
    if (!a.raw.empty() || !a.normalized.empty()) Fail("not found but raw/normalized set", name);
    return;
  }
  if (a.normalized.empty()) Fail("found with an empty normalized answer", name);
  if (text.find(a.raw) == std::string_view::npos) Fail("raw is not a substring of the text", name);
  if (format == AnswerFormat::kMultipleChoice) {
    if (a.normalized.size() != 1 || a.normalized[0] < 'A' || a.normalized[0] > 'E') {
      Fail("multiple choice answer is not one letter A-E", a.normalized);
    }
  } else if (a.normalized != conclave::orchestrator::NormalizeAnswer(a.raw)) {
    Fail("normalized != NormalizeAnswer(raw)", name);
  }
}

void CheckNormalizers(std::string_view text) {
  using namespace conclave::orchestrator;
  if (std::optional<std::string> n = NormalizeNumber(text)) {
    if (!IsCanonicalDecimal(*n) && !IsCanonicalFraction(*n)) Fail("NormalizeNumber not canonical", *n);
    if (NormalizeNumber(*n) != n) Fail("NormalizeNumber is not a fixed point on its output", *n);
    if (NormalizeAnswer(text) != *n) Fail("NormalizeAnswer differs from NormalizeNumber", *n);
  }
  const std::string t = NormalizeText(text);
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c >= 'A' && c <= 'Z') Fail("NormalizeText left an upper-case letter", t);
    if (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      Fail("NormalizeText left whitespace other than a space", t);
    }
    if (c == ' ' && i + 1 < t.size() && t[i + 1] == ' ') Fail("NormalizeText left two spaces", t);
  }
  (void)StripAnswerDecorations(text);
  const size_t open = text.find('{');
  if (open != std::string_view::npos) {
    const size_t close = FindClosingBrace(text, open);
    if (close != std::string_view::npos && (close <= open || close >= text.size() ||
                                            text[close] != '}')) {
      Fail("FindClosingBrace does not point at a '}' after the '{'", text.substr(open, 64));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<ExtractedAnswer> first_auto;
  for (AnswerFormat format : {AnswerFormat::kGsm8k, AnswerFormat::kBoxed,
                              AnswerFormat::kAnswerLine, AnswerFormat::kNumber,
                              AnswerFormat::kMultipleChoice}) {
    const ExtractedAnswer a = ExtractAnswer(text, format);
    CheckAnswer(text, format, a);
    if (format != AnswerFormat::kMultipleChoice && a.found && !first_auto) first_auto = a;
  }
  const ExtractedAnswer a = ExtractAnswer(text, AnswerFormat::kAuto);
  CheckAnswer(text, AnswerFormat::kAuto, a);
  if (a.found != first_auto.has_value() ||
      (a.found && (a.raw != first_auto->raw || a.normalized != first_auto->normalized))) {
    Fail("auto differs from the first format that finds an answer", a.raw);
  }
  CheckNormalizers(text);
  (void)conclave::orchestrator::ParseAnswerFormat(text.substr(0, 32));
  return 0;
}
