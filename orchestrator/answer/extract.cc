#include "orchestrator/answer/extract.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "orchestrator/answer/normalize.h"

namespace conclave::orchestrator {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Splits on any of `separators`; skip_empty drops empty pieces.
std::vector<std::string_view> Split(std::string_view s, std::string_view separators,
                                    bool skip_empty) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find_first_of(separators, start);
    const std::string_view piece =
        s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!skip_empty || !piece.empty()) pieces.push_back(piece);
    if (end == std::string_view::npos) return pieces;
    start = end + 1;
  }
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// What an answer line's text becomes as `raw`: trimmed, markdown '*' runs
// and a trailing period removed.
std::string_view CleanAnswerText(std::string_view s) {
  for (;;) {
    const size_t before = s.size();
    s = Trim(s);
    while (!s.empty() && s.front() == '*') s.remove_prefix(1);
    while (!s.empty() && s.back() == '*') s.remove_suffix(1);
    s = Trim(s);
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    if (s.size() == before) return s;
  }
}

ExtractedAnswer Found(std::string_view raw) {
  ExtractedAnswer answer;
  answer.normalized = NormalizeAnswer(raw);
  if (answer.normalized.empty()) return ExtractedAnswer{};
  answer.found = true;
  answer.raw = std::string(raw);
  return answer;
}

// If "answer" at `pos` of the lower-cased `line` starts a marker ("answer:",
// "answer**:", "answer is", "answer is:"), the position just after it.
std::optional<size_t> MarkerEnd(std::string_view line, size_t pos) {
  if (pos > 0 && IsAlpha(line[pos - 1])) return std::nullopt;  // "reanswer"
  const size_t after = pos + std::string_view("answer").size();
  size_t q = after;
  while (q < line.size() && (line[q] == '*' || line[q] == '_')) ++q;
  while (q < line.size() && IsSpace(line[q])) ++q;
  if (q < line.size() && line[q] == ':') return q + 1;
  q = after;
  while (q < line.size() && IsSpace(line[q])) ++q;
  if (q == after || line.substr(q, 2) != "is") return std::nullopt;
  q += 2;
  if (q < line.size() && IsAlpha(line[q])) return std::nullopt;  // "answer isn't"
  size_t r = q;
  while (r < line.size() && (line[r] == '*' || IsSpace(line[r]))) ++r;
  return r < line.size() && line[r] == ':' ? r + 1 : q;
}

// The text after the last answer marker in `line`, or nullopt without one.
std::optional<std::string_view> AfterLastMarker(std::string_view line) {
  const std::string lower = AsciiLower(line);
  std::optional<size_t> end;
  for (size_t pos = lower.find("answer"); pos != std::string::npos;
       pos = lower.find("answer", pos + 1)) {
    if (std::optional<size_t> e = MarkerEnd(lower, pos)) end = e;
  }
  if (!end.has_value()) return std::nullopt;
  return line.substr(*end);
}

// The content of the last complete \boxed / \fbox, skipping empty ones;
// nullopt when there is none or the last non-empty one is unterminated.
std::optional<std::string_view> LastBoxedContent(std::string_view text) {
  constexpr std::string_view kBoxed = "\\boxed", kFbox = "\\fbox";
  // Walks the occurrences backwards, each search starting where its last one
  // ended, so the walk is linear however many empty boxes there are.
  size_t boxed = text.rfind(kBoxed);
  size_t fbox = text.rfind(kFbox);
  while (boxed != std::string_view::npos || fbox != std::string_view::npos) {
    const bool is_boxed =
        boxed != std::string_view::npos && (fbox == std::string_view::npos || boxed > fbox);
    const size_t pos = is_boxed ? boxed : fbox;
    const size_t after = pos + (is_boxed ? kBoxed.size() : kFbox.size());
    if (is_boxed) {
      boxed = pos == 0 ? std::string_view::npos : text.rfind(kBoxed, pos - 1);
    } else {
      fbox = pos == 0 ? std::string_view::npos : text.rfind(kFbox, pos - 1);
    }
    if (after < text.size() && text[after] == '{') {
      const size_t close = FindClosingBrace(text, after);
      if (close == std::string_view::npos) return std::nullopt;
      const std::string_view content = Trim(text.substr(after + 1, close - after - 1));
      if (!content.empty()) return content;
    } else if (after < text.size() && text[after] == ' ') {
      // MATH's "\boxed 5": up to the next space or '$'.
      size_t start = after;
      while (start < text.size() && text[start] == ' ') ++start;
      size_t stop = start;
      while (stop < text.size() && !IsSpace(text[stop]) && text[stop] != '$') ++stop;
      if (stop > start) return text.substr(start, stop - start);
    }
  }
  return std::nullopt;
}

// Narrows an answer text that goes on after the answer: to the content of a
// \boxed{} in it ("$\boxed{18}$. I hope it is correct."), or to its first
// sentence when that is a number ("42. Let me double-check: ...").
std::string_view FirstSentenceAnswer(std::string_view answer) {
  if (std::optional<std::string_view> boxed = LastBoxedContent(answer)) return *boxed;
  for (size_t dot = answer.find('.'); dot != std::string_view::npos;
       dot = answer.find('.', dot + 1)) {
    if (dot + 1 < answer.size() && IsSpace(answer[dot + 1])) {
      const std::string_view first = CleanAnswerText(answer.substr(0, dot));
      if (NormalizeNumber(first).has_value()) return first;
      break;
    }
  }
  return answer;
}

// A format's placeholder in angle brackets, echoed from an instruction
// ("<number>\", where <number> is ...", "<your answer>"): no answer. Needs
// two or more letters inside, so "<A>" is not one.
bool IsPlaceholder(std::string_view answer) {
  if (answer.empty() || answer[0] != '<') return false;
  int letters = 0;
  for (size_t i = 1; i < answer.size(); ++i) {
    const char c = answer[i];
    if (c == '>') return letters >= 2;
    if (IsAlpha(c)) {
      ++letters;
    } else if (c != ' ' && c != '_') {
      return false;
    }
  }
  return false;
}

// The answer line's text (already cleaned), or nullopt.
std::optional<std::string_view> AnswerLineText(std::string_view text) {
  const std::vector<std::string_view> lines = Split(text, "\n", /*skip_empty=*/false);
  for (size_t i = lines.size(); i-- > 0;) {
    std::optional<std::string_view> after = AfterLastMarker(lines[i]);
    if (!after.has_value()) continue;
    std::string_view answer = CleanAnswerText(*after);
    if (answer.empty()) {
      // "Final Answer:" alone: the answer is on the next non-empty line,
      // unless that line is an answer line of its own.
      for (size_t j = i + 1; j < lines.size(); ++j) {
        answer = CleanAnswerText(lines[j]);
        if (answer.empty()) continue;
        if (AfterLastMarker(lines[j]).has_value()) answer = {};
        break;
      }
    }
    answer = FirstSentenceAnswer(answer);
    if (IsPlaceholder(answer)) continue;
    if (!answer.empty() && !NormalizeAnswer(answer).empty()) return answer;
  }
  return std::nullopt;
}

ExtractedAnswer ExtractGsm8k(std::string_view text) {
  std::optional<std::string_view> last_number, last_any;
  // Only a line's last "####" counts: what follows an earlier one holds it.
  for (std::string_view line : Split(text, "\n", /*skip_empty=*/false)) {
    size_t pos = line.rfind("####");
    if (pos == std::string_view::npos) continue;
    while (pos < line.size() && line[pos] == '#') ++pos;
    std::string_view rest = line.substr(pos);
    // "#### The answer is 72": keep what follows the marker.
    if (std::optional<std::string_view> after = AfterLastMarker(rest)) rest = *after;
    rest = FirstSentenceAnswer(CleanAnswerText(rest));
    if (rest.empty() || IsPlaceholder(rest) || NormalizeAnswer(rest).empty()) continue;
    last_any = rest;
    if (NormalizeNumber(rest).has_value()) last_number = rest;
  }
  if (last_number.has_value()) return Found(*last_number);
  if (last_any.has_value()) return Found(*last_any);
  return ExtractedAnswer{};
}

ExtractedAnswer ExtractBoxed(std::string_view text) {
  std::optional<std::string_view> content = LastBoxedContent(text);
  return content.has_value() ? Found(*content) : ExtractedAnswer{};
}

ExtractedAnswer ExtractAnswerLine(std::string_view text) {
  std::optional<std::string_view> answer = AnswerLineText(text);
  return answer.has_value() ? Found(*answer) : ExtractedAnswer{};
}

// Where the number whose first digit is at `start` begins: at a '-' directly
// before it, unless that is a minus between operands ("5-3", "x-3").
size_t WithSign(std::string_view text, size_t start) {
  if (start == 0 || text[start - 1] != '-') return start;
  if (start >= 2) {
    const char before = text[start - 2];
    if (IsAlpha(before) || IsDigit(before) || before == ')') return start;
  }
  return start - 1;
}

ExtractedAnswer ExtractNumber(std::string_view text) {
  std::optional<std::string_view> last;
  size_t i = 0;
  while (i < text.size()) {
    const bool starts = IsDigit(text[i]) || (text[i] == '.' && i + 1 < text.size() &&
                                             IsDigit(text[i + 1]) &&
                                             (i == 0 || !IsDigit(text[i - 1])));
    if (!starts) {
      ++i;
      continue;
    }
    if (i > 0 && (IsAlpha(text[i - 1]) || text[i - 1] == '_')) {
      // "step2", "H2O", "log2": part of a word.
      while (i < text.size() && (IsAlpha(text[i]) || IsDigit(text[i]) || text[i] == '_' ||
                                 text[i] == '.')) {
        ++i;
      }
      continue;
    }
    const size_t start = WithSign(text, i);
    size_t p = i;
    while (p < text.size() && IsDigit(text[p])) ++p;
    const bool has_int = p > i;
    bool grouped = false;
    while (has_int && p + 3 < text.size() && text[p] == ',' && IsDigit(text[p + 1]) &&
           IsDigit(text[p + 2]) && IsDigit(text[p + 3]) &&
           (p + 4 >= text.size() || !IsDigit(text[p + 4]))) {
      p += 4;
      grouped = true;
    }
    bool decimal = false;
    if (p + 1 < text.size() && text[p] == '.' && IsDigit(text[p + 1])) {
      ++p;
      while (p < text.size() && IsDigit(text[p])) ++p;
      decimal = true;
    }
    if (has_int && !grouped && !decimal && p + 1 < text.size() && text[p] == '/' &&
        IsDigit(text[p + 1])) {
      ++p;
      while (p < text.size() && IsDigit(text[p])) ++p;
    }
    last = text.substr(start, p - start);
    i = p;
  }
  return last.has_value() ? Found(*last) : ExtractedAnswer{};
}

// A multiple-choice letter standing alone in `chunk` (see kMultipleChoice).
// `whole`: `chunk` is an entire answer, so a bare lower-case letter counts
// when it is the only word. Returns the first one.
ExtractedAnswer LetterIn(std::string_view chunk, bool whole) {
  const std::vector<std::string_view> words = Split(chunk, " \t\r\n", /*skip_empty=*/true);
  for (std::string_view word : words) {
    std::string_view core = word;
    bool bracketed = false;
    while (!core.empty() && (core.front() == '*' || core.front() == '(' || core.front() == '[')) {
      bracketed |= core.front() != '*';
      core.remove_prefix(1);
    }
    // At most one punctuation mark after the wrappers: "B).", "**C**:".
    if (!core.empty() && std::string_view(".:,;").find(core.back()) != std::string_view::npos) {
      core.remove_suffix(1);
    }
    while (!core.empty() && (core.back() == '*' || core.back() == ')' || core.back() == ']')) {
      core.remove_suffix(1);
    }
    if (core.size() != 1) continue;
    const char c = core[0];
    const bool upper = c >= 'A' && c <= 'E';
    const bool lower = c >= 'a' && c <= 'e';
    if (upper || (lower && (bracketed || (whole && words.size() == 1)))) {
      ExtractedAnswer answer;
      answer.found = true;
      answer.raw = std::string(word);
      answer.normalized = std::string(1, absl::ascii_toupper(static_cast<unsigned char>(c)));
      return answer;
    }
  }
  return ExtractedAnswer{};
}

ExtractedAnswer ExtractMultipleChoice(std::string_view text) {
  if (std::optional<std::string_view> line = AnswerLineText(text)) {
    ExtractedAnswer answer = LetterIn(*line, /*whole=*/true);
    if (answer.found) return answer;
  }
  if (std::optional<std::string_view> boxed = LastBoxedContent(text)) {
    ExtractedAnswer answer = LetterIn(StripAnswerDecorations(*boxed), /*whole=*/true);
    if (answer.found) return answer;
  }
  const std::string_view trimmed = Trim(text);
  const size_t last_space = trimmed.find_last_of(" \t\r\n");
  const std::string_view last_word =
      last_space == std::string_view::npos ? trimmed : trimmed.substr(last_space + 1);
  return LetterIn(last_word, /*whole=*/false);
}

}  // namespace

ExtractedAnswer ExtractAnswer(std::string_view text, AnswerFormat format) {
  switch (format) {
    case AnswerFormat::kGsm8k:
      return ExtractGsm8k(text);
    case AnswerFormat::kBoxed:
      return ExtractBoxed(text);
    case AnswerFormat::kAnswerLine:
      return ExtractAnswerLine(text);
    case AnswerFormat::kMultipleChoice:
      return ExtractMultipleChoice(text);
    case AnswerFormat::kNumber:
      return ExtractNumber(text);
    case AnswerFormat::kAuto:
      break;
  }
  for (AnswerFormat f : {AnswerFormat::kGsm8k, AnswerFormat::kBoxed, AnswerFormat::kAnswerLine,
                         AnswerFormat::kNumber}) {
    ExtractedAnswer answer = ExtractAnswer(text, f);
    if (answer.found) return answer;
  }
  return ExtractedAnswer{};
}

const char* AnswerFormatName(AnswerFormat format) {
  switch (format) {
    case AnswerFormat::kAuto:
      return "auto";
    case AnswerFormat::kGsm8k:
      return "gsm8k";
    case AnswerFormat::kBoxed:
      return "boxed";
    case AnswerFormat::kAnswerLine:
      return "answer_line";
    case AnswerFormat::kMultipleChoice:
      return "multiple_choice";
    case AnswerFormat::kNumber:
      return "number";
  }
  return "unknown";
}

absl::StatusOr<AnswerFormat> ParseAnswerFormat(std::string_view name) {
  static constexpr AnswerFormat kAll[] = {
      AnswerFormat::kAuto,           AnswerFormat::kGsm8k,  AnswerFormat::kBoxed,
      AnswerFormat::kAnswerLine,     AnswerFormat::kMultipleChoice, AnswerFormat::kNumber};
  for (AnswerFormat format : kAll) {
    if (AsciiLower(name) == AnswerFormatName(format)) return format;
  }
  const std::string shown = absl::CHexEscape(std::string(name.substr(0, 64)));
  return absl::InvalidArgumentError(absl::StrCat(
      "answer_format=\"", shown,
      "\" is not one of auto, gsm8k, boxed, answer_line, multiple_choice, number"));
}

}  // namespace conclave::orchestrator
