// Finds the final answer in an agent's output text, in the format the request
// asked the agents to use, and normalises it (normalize.h) so that agents can
// vote on it.
//
// Works on bytes: any input, invalid UTF-8 included, is safe; only ASCII is
// interpreted. Linear in the text length.
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_ANSWER_EXTRACT_H_
#define CONCLAVE_ORCHESTRATOR_ANSWER_EXTRACT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace conclave::orchestrator {

enum class AnswerFormat {
  // kGsm8k, then kBoxed, then kAnswerLine, then kNumber: the first that finds
  // an answer.
  kAuto,
  // The text after the last "####" up to the end of its line ("#### 72";
  // in a line with several, the last one).
  // Occurrences with nothing after them are skipped, and so are non-numeric
  // ones when a numeric one exists: a markdown "#### Step 3" heading after
  // "#### 72" does not hide the answer. The line's text is read like an
  // answer line's ("#### The answer is 72." gives "72").
  kGsm8k,
  // The content of the last \boxed{...} or \fbox{...} (braces matched, so
  // \boxed{\frac{1}{2}} gives "\frac{1}{2}"); also MATH's "\boxed 5" form.
  // When the last one is unterminated (the agent ran out of tokens inside
  // it), nothing is found, even if an earlier one is complete.
  kBoxed,
  // The last line holding "answer:" or "answer is" (any case, so "Final
  // Answer:", "The answer is", "**Answer:**"): the text after the last such
  // marker in that line, or the next non-empty line when nothing follows it
  // (and that line is not an answer line itself).
  // Markdown '*' and a trailing period are stripped from it. When it goes on
  // after the answer, it is narrowed to the content of a \boxed{} in it
  // ("The final answer is $\boxed{18}$. I hope it is correct.") or else to
  // its first sentence when that is a number ("42. Let me check: 6*7=42").
  // Lines whose answer is empty after stripping are skipped.
  kAnswerLine,
  // One letter A-E, normalised upper-case. Looked for, in order, in the
  // answer line (kAnswerLine: "Answer: (B)", "the answer is C", "Answer:
  // **D** because ..."), in the last \boxed{}, then at the very end of the
  // text ("... so **B**", "... B)", "(c)."). A letter counts when it stands
  // alone, wrapped at most in '*', '(', ')', '[', ']' and followed by at most
  // one of ".:,;)"; a bare lower-case letter counts only when it is the whole
  // answer-line text or is wrapped in brackets ("(b)"), since "a" is
  // usually the article.
  kMultipleChoice,
  // The last number in the text: digits with optional sign, thousands
  // separators, decimal part, or a simple fraction "3/4". A number glued to
  // a letter before it ("step2", "H2O") is not one.
  kNumber,
};

struct ExtractedAnswer {
  bool found = false;
  std::string raw;         // the answer as written (trimmed); "" when !found
  std::string normalized;  // NormalizeAnswer(raw), or the letter for MC
};

// The answer in `text` under `format`; found = false when there is none (or
// it normalises to "").
ExtractedAnswer ExtractAnswer(std::string_view text, AnswerFormat format);

// "auto", "gsm8k", "boxed", "answer_line", "multiple_choice", "number" (any
// case). INVALID_ARGUMENT naming the value and listing these otherwise.
absl::StatusOr<AnswerFormat> ParseAnswerFormat(std::string_view name);

// The name ParseAnswerFormat accepts for `format` ("answer_line", ...).
const char* AnswerFormatName(AnswerFormat format);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_ANSWER_EXTRACT_H_
