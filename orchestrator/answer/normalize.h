// Canonical forms of extracted answers, so that answers meaning the same thing
// compare equal as strings ("1,234.0", "$1234" and "1234" all become "1234")
// and votes can be counted with a hash map.
//
// Every function works on bytes: ASCII is interpreted, any other byte
// (including invalid UTF-8) is kept or rejected as an ordinary character,
// never decoded, so no input can crash them.
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_ANSWER_NORMALIZE_H_
#define CONCLAVE_ORCHESTRATOR_ANSWER_NORMALIZE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace conclave::orchestrator {

// Decimal places a fraction may need to be written as a decimal (1/64 =
// 0.015625 is written as a decimal, 1/128 = 0.0078125 stays "1/128").
inline constexpr int kMaxFractionDecimals = 6;

// The canonical form of `text` when, after StripAnswerDecorations, it is one
// number; std::nullopt otherwise. Accepted, in order:
//   * an optional "<letter> =" assignment ("x = 5");
//   * an optional sign ('+', '-', or U+2212 minus) and an optional currency
//     symbol ($, \$, U+20AC euro, U+00A3 pound, U+00A5 yen), in either order;
//   * the number: digits with optional thousands separators in groups of
//     exactly three ("1,234,567"; LaTeX "1{,}234" and "1\,234" too) and an
//     optional decimal part (".5" alone is accepted); or a simple fraction
//     "p/q" of integers (spaces around '/' allowed); or a mixed number
//     "2 1/2"; or \frac{p}{q}, \dfrac{p}{q}, \tfrac{p}{q} with optionally
//     signed integer p and q;
//   * an optional tail holding no digit (except exponents right after '^', as
//     in "cm^2") made of letters, spaces, percent signs and a few punctuation
//     marks: units and words such as "%", "\%", " dollars", " cm", " km/h",
//     "^\circ" are dropped. A tail glued to the number must start with two
//     letters or a symbol ("18cm" is 18, "3x" is not a number), and its only
//     LaTeX commands may be \text, \mathrm, \mbox, \textrm, \circ ("2\pi" is
//     not a number).
// Canonical form: an optional '-', the integer part without leading zeros
// ("0" when empty), and a decimal part without trailing zeros when non-zero:
// "18.0" -> "18", "0.50" -> "0.5", ".5" -> "0.5", "-0" -> "0", "+7" -> "7".
// A fraction is reduced; it becomes a decimal when its value is a terminating
// decimal with at most kMaxFractionDecimals places (the reduced denominator
// divides 10^6: exact arithmetic, no rounding), else it stays "p/q" reduced
// ("3/4" -> "0.75", "6/8" -> "0.75", "2/6" -> "1/3", "-\frac{4}{2}" -> "-2").
// Not numbers: a zero denominator, fraction parts over 18 digits, scientific
// notation ("1e5"), bad grouping ("12,34"), several numbers ("3 and 4").
std::optional<std::string> NormalizeNumber(std::string_view text);

// Canonical form of a non-numeric answer: StripAnswerDecorations, runs of
// ASCII whitespace collapsed to one space, ASCII letters lower-cased.
// "  The  Eiffel Tower. " -> "the eiffel tower".
std::string NormalizeText(std::string_view text);

// NormalizeNumber(text) when it is a number, else NormalizeText(text).
std::string NormalizeAnswer(std::string_view text);

// Removes what wraps an answer without being part of it, repeatedly until
// nothing changes: surrounding ASCII whitespace; markdown emphasis and code
// (runs of '*' and '`' at either end, independently, so "**x**", "`x`" and
// the "** 18" left after "**Answer:**"; "__x__" as a pair); math
// delimiters ("$x$", "$$x$$", "\(x\)", "\[x\]"); a whole-string \boxed{x},
// \fbox{x}, \text{x}, \textbf{x}, \mathrm{x}, \mathbf{x} (braces matched, so
// "\text{a} + \text{b}" is left alone); trailing periods. At most 16 rounds
// (linear time on any input). A lone leading '$' is kept (it is a currency
// sign: "$18").
std::string StripAnswerDecorations(std::string_view text);

// Position of the '}' that closes the '{' at text[open] (nested braces
// counted, escaped "\{" and "\}" skipped), or std::string_view::npos when
// text[open] is not '{' or the group is unterminated.
size_t FindClosingBrace(std::string_view text, size_t open);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_ANSWER_NORMALIZE_H_
