#include "orchestrator/answer/normalize.h"

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"

namespace conclave::orchestrator {
namespace {

// Fraction parts are parsed into uint64_t: 18 digits always fit.
constexpr size_t kMaxFractionDigits = 18;
constexpr uint64_t kMaxFractionPart = 999'999'999'999'999'999;  // 18 digits
constexpr uint64_t kDecimalScale = 1000000;  // 10^kMaxFractionDecimals
constexpr int kMaxDecorationRounds = 16;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// If `s` is exactly `command{...}` (spaces allowed before the brace), the
// inside of the braces.
bool UnwrapCommand(std::string_view s, std::string_view command, std::string_view* inner) {
  if (!s.starts_with(command)) return false;
  size_t open = command.size();
  while (open < s.size() && IsSpace(s[open])) ++open;
  if (open >= s.size() || s[open] != '{') return false;
  if (FindClosingBrace(s, open) != s.size() - 1) return false;
  *inner = s.substr(open + 1, s.size() - open - 2);
  return true;
}

// Rewrites LaTeX spellings into the plain characters the parser knows:
// "{,}" and "\," between digits -> ',' (thousands separators), other "\,",
// "\;", "\ " and "~" -> ' ', "\!" -> nothing, "\$" -> '$', "\%" -> '%'.
std::string PlainLatex(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '{' && s.substr(i, 3) == "{,}") {
      out.push_back(',');
      i += 2;
    } else if (c == '\\' && i + 1 < s.size()) {
      const char next = s[i + 1];
      if (next == ',') {
        const bool between_digits = !out.empty() && IsDigit(out.back()) &&
                                    i + 2 < s.size() && IsDigit(s[i + 2]);
        out.push_back(between_digits ? ',' : ' ');
      } else if (next == ';' || next == ' ') {
        out.push_back(' ');
      } else if (next == '!') {
        // negative thin space: nothing
      } else if (next == '$' || next == '%') {
        out.push_back(next);
      } else {
        out.push_back(c);
        continue;
      }
      ++i;
    } else if (c == '~') {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// A cursor over the text being parsed as a number.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}

  bool done() const { return pos_ >= s_.size(); }
  char peek(size_t ahead = 0) const {
    return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0';
  }
  size_t pos() const { return pos_; }
  void set_pos(size_t pos) { pos_ = pos; }
  std::string_view rest() const { return s_.substr(pos_); }

  // Skips spaces; returns how many.
  size_t SkipSpaces() {
    const size_t start = pos_;
    while (!done() && IsSpace(s_[pos_])) ++pos_;
    return pos_ - start;
  }
  bool Consume(std::string_view token) {
    if (!rest().starts_with(token)) return false;
    pos_ += token.size();
    return true;
  }
  std::string_view Digits() {
    const size_t start = pos_;
    while (!done() && IsDigit(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

std::string_view StripLeadingZeros(std::string_view digits) {
  while (!digits.empty() && digits.front() == '0') digits.remove_prefix(1);
  return digits;
}

// Digits (no sign) as a uint64_t, when they have at most 18 significant ones.
bool ParseSmall(std::string_view digits, uint64_t* value) {
  digits = StripLeadingZeros(digits);
  if (digits.size() > kMaxFractionDigits) return false;
  uint64_t v = 0;
  for (char c : digits) v = v * 10 + static_cast<uint64_t>(c - '0');
  *value = v;
  return true;
}

// An optionally signed integer inside \frac's braces: "{ -3 }".
bool ParseBracedInteger(Cursor& c, bool* negative, uint64_t* value) {
  c.SkipSpaces();
  if (!c.Consume("{")) return false;
  c.SkipSpaces();
  *negative = c.Consume("-");
  if (!*negative) c.Consume("+");
  c.SkipSpaces();
  const std::string_view digits = c.Digits();
  if (digits.empty() || !ParseSmall(digits, value)) return false;
  c.SkipSpaces();
  return c.Consume("}");
}

std::string CanonicalDecimal(bool negative, std::string_view int_digits,
                             std::string_view frac_digits) {
  int_digits = StripLeadingZeros(int_digits);
  while (!frac_digits.empty() && frac_digits.back() == '0') frac_digits.remove_suffix(1);
  std::string out = int_digits.empty() ? "0" : std::string(int_digits);
  if (!frac_digits.empty()) {
    out.push_back('.');
    out.append(frac_digits);
  }
  if (negative && out != "0") out.insert(out.begin(), '-');
  return out;
}

uint64_t Gcd(uint64_t a, uint64_t b) {
  while (b != 0) {
    const uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// p/q reduced, as a decimal when it terminates within kMaxFractionDecimals.
std::optional<std::string> CanonicalFraction(bool negative, uint64_t p, uint64_t q) {
  if (q == 0) return std::nullopt;
  const uint64_t g = Gcd(p, q);  // >= 1 since q > 0
  p /= g;
  q /= g;
  std::string out;
  if (kDecimalScale % q == 0) {
    const uint64_t frac = (p % q) * (kDecimalScale / q);  // < 10^6
    std::string frac_digits = std::to_string(frac);
    frac_digits.insert(0, 6 - frac_digits.size(), '0');
    out = CanonicalDecimal(false, std::to_string(p / q), frac_digits);
  } else {
    out = std::to_string(p) + "/" + std::to_string(q);
  }
  if (negative && out != "0") out.insert(out.begin(), '-');
  return out;
}

// The characters a unit or word tail may hold; see NormalizeNumber.
bool TailIsUnits(std::string_view tail, bool attached) {
  if (tail.empty()) return true;
  // "3x", "2n", "5i" are algebra, not "3 x": a tail glued to the number must
  // start with a word of two letters or more ("18cm") or a symbol ("18%").
  if (attached && IsAlpha(tail[0]) && (tail.size() < 2 || !IsAlpha(tail[1]))) return false;
  static constexpr std::string_view kCommands[] = {"\\text", "\\mathrm", "\\mbox",
                                                   "\\textrm", "\\circ"};
  bool exponent = false;  // right after '^' (or "^{"): digits allowed
  for (size_t i = 0; i < tail.size(); ++i) {
    const char c = tail[i];
    if (IsDigit(c)) {
      if (!exponent) return false;
      continue;
    }
    if (c == '\\') {
      bool known = false;
      for (std::string_view command : kCommands) {
        if (tail.substr(i).starts_with(command)) {
          i += command.size() - 1;
          known = true;
          break;
        }
      }
      if (!known) return false;  // "\pi", "\sqrt": part of the value
      exponent = false;
      continue;
    }
    const bool allowed = IsAlpha(c) || IsSpace(c) || c == '%' || c == '.' || c == '/' ||
                         c == '^' || c == '{' || c == '}' || c == '(' || c == ')' ||
                         c == ',' || c == '-' || c == '\'' ||
                         static_cast<unsigned char>(c) >= 0x80;  // degree sign, ...
    if (!allowed) return false;
    exponent = c == '^' || (c == '{' && exponent);
  }
  return true;
}

}  // namespace

size_t FindClosingBrace(std::string_view text, size_t open) {
  if (open >= text.size() || text[open] != '{') return std::string_view::npos;
  int depth = 0;
  for (size_t i = open; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\') {
      ++i;  // "\{", "\}" and "\\" are not braces
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i;
    }
  }
  return std::string_view::npos;
}

std::string StripAnswerDecorations(std::string_view text) {
  static constexpr std::string_view kWrappers[] = {"\\boxed", "\\fbox",   "\\textbf",
                                                   "\\text",  "\\mathrm", "\\mathbf"};
  std::string_view s = text;
  // Real answers nest a few wrappers at most; the cap keeps a pathological
  // input (thousands of alternating wrappers) linear.
  for (int round = 0; round < kMaxDecorationRounds; ++round) {
    const size_t before = s.size();
    s = Trim(s);
    while (!s.empty() && (s.front() == '*' || s.front() == '`')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '*' || s.back() == '`')) s.remove_suffix(1);
    if (s.size() >= 4 && s.starts_with("__") && s.ends_with("__")) {
      s = s.substr(2, s.size() - 4);
    }
    if (s.size() >= 4 && s.starts_with("$$") && s.ends_with("$$")) {
      s = s.substr(2, s.size() - 4);
    } else if (s.size() >= 2 && s.front() == '$' && s.back() == '$') {
      s = s.substr(1, s.size() - 2);
    }
    if (s.size() >= 4 && ((s.starts_with("\\(") && s.ends_with("\\)")) ||
                          (s.starts_with("\\[") && s.ends_with("\\]")))) {
      s = s.substr(2, s.size() - 4);
    }
    for (std::string_view command : kWrappers) {
      std::string_view inner;
      if (UnwrapCommand(s, command, &inner)) {
        s = inner;
        break;
      }
    }
    while (!s.empty() && s.back() == '.') s.remove_suffix(1);
    if (s.size() == before) break;
  }
  return std::string(s);
}

std::optional<std::string> NormalizeNumber(std::string_view text) {
  const std::string plain = PlainLatex(StripAnswerDecorations(text));
  Cursor c(plain);
  c.SkipSpaces();

  // "x = 5": a single letter assigned.
  if (IsAlpha(c.peek()) && !IsAlpha(c.peek(1))) {
    const size_t start = c.pos();
    c.set_pos(start + 1);
    c.SkipSpaces();
    if (!c.Consume("=")) c.set_pos(start);
  }

  bool negative = false;
  bool signed_already = false;
  bool currency = false;
  for (int i = 0; i < 2; ++i) {
    c.SkipSpaces();
    if (!signed_already && (c.Consume("-") || c.Consume("\xE2\x88\x92"))) {
      negative = true;
      signed_already = true;
    } else if (!signed_already && c.Consume("+")) {
      signed_already = true;
    } else if (!currency && (c.Consume("$") || c.Consume("\xE2\x82\xAC") ||
                             c.Consume("\xC2\xA3") || c.Consume("\xC2\xA5"))) {
      currency = true;
    }
  }
  c.SkipSpaces();

  std::optional<std::string> value;
  if (c.Consume("\\dfrac") || c.Consume("\\tfrac") || c.Consume("\\frac")) {
    bool p_negative = false, q_negative = false;
    uint64_t p = 0, q = 0;
    if (!ParseBracedInteger(c, &p_negative, &p) || !ParseBracedInteger(c, &q_negative, &q)) {
      return std::nullopt;
    }
    value = CanonicalFraction(negative != (p_negative != q_negative), p, q);
    if (!value.has_value()) return std::nullopt;
  } else {
    const std::string_view first = c.Digits();
    std::string int_digits(first);
    bool grouped = false;
    while (c.peek() == ',' && IsDigit(c.peek(1)) && IsDigit(c.peek(2)) && IsDigit(c.peek(3)) &&
           !IsDigit(c.peek(4)) && !first.empty()) {
      c.set_pos(c.pos() + 1);
      int_digits.append(c.Digits());
      grouped = true;
    }
    if (grouped && first.size() > 3) return std::nullopt;  // "1234,567"
    std::string_view frac_digits;
    if (c.peek() == '.' && IsDigit(c.peek(1))) {
      c.set_pos(c.pos() + 1);
      frac_digits = c.Digits();
    }
    if (int_digits.empty() && frac_digits.empty()) return std::nullopt;

    if (!grouped && frac_digits.empty()) {
      // "2 1/2" (mixed number), then "3/4" or "3 / 4".
      const size_t after_int = c.pos();
      uint64_t whole = 0, p = 0, q = 0;
      if (c.SkipSpaces() > 0) {
        const std::string_view p_digits = c.Digits();
        c.SkipSpaces();
        if (!p_digits.empty() && c.Consume("/")) {
          c.SkipSpaces();
          const std::string_view q_digits = c.Digits();
          if (!q_digits.empty() && ParseSmall(int_digits, &whole) &&
              ParseSmall(p_digits, &p) && ParseSmall(q_digits, &q) && p < q) {
            // The improper fraction's numerator is a fraction part too: over
            // 18 digits it is not a number (so that the canonical form
            // "total/q" is itself one).
            uint64_t total = 0;
            if (__builtin_mul_overflow(whole, q, &total) ||
                __builtin_add_overflow(total, p, &total) || total > kMaxFractionPart) {
              return std::nullopt;
            }
            value = CanonicalFraction(negative, total, q);
            if (!value.has_value()) return std::nullopt;
          }
        }
      }
      if (!value.has_value()) {
        c.set_pos(after_int);
        c.SkipSpaces();
        if (c.Consume("/")) {
          c.SkipSpaces();
          const std::string_view q_digits = c.Digits();
          if (q_digits.empty()) {
            c.set_pos(after_int);  // "18 km/h" keeps "/h" in the tail
          } else {
            if (!ParseSmall(int_digits, &p) || !ParseSmall(q_digits, &q)) return std::nullopt;
            value = CanonicalFraction(negative, p, q);
            if (!value.has_value()) return std::nullopt;
          }
        } else {
          c.set_pos(after_int);
        }
      }
    }
    if (!value.has_value()) value = CanonicalDecimal(negative, int_digits, frac_digits);
  }

  const bool attached = !c.done() && !IsSpace(c.peek());
  if (!TailIsUnits(c.rest(), attached)) return std::nullopt;
  return value;
}

std::string NormalizeText(std::string_view text) {
  const std::string stripped = StripAnswerDecorations(text);
  std::string out;
  out.reserve(stripped.size());
  bool space = false;
  for (char c : stripped) {
    if (IsSpace(c)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string NormalizeAnswer(std::string_view text) {
  std::optional<std::string> number = NormalizeNumber(text);
  return number.has_value() ? *std::move(number) : NormalizeText(text);
}

}  // namespace conclave::orchestrator
