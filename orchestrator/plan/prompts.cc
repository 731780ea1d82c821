#include "orchestrator/plan/prompts.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::orchestrator {
namespace {

constexpr char kReasonStepByStep[] =
    "Think about the problem step by step, showing your reasoning.";

// absl::StrCat takes absl::string_view, a distinct type in this Abseil build.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// `messages` with `instruction` at the end of the leading system message, or
// in a new leading system message.
std::vector<engine::ChatMessage> WithSystemInstruction(
    const std::vector<engine::ChatMessage>& messages, const std::string& instruction) {
  std::vector<engine::ChatMessage> out;
  out.reserve(messages.size() + 1);
  if (!messages.empty() && messages.front().role == "system") {
    out = messages;
    std::string& content = out.front().content;
    content = content.empty() ? instruction : absl::StrCat(content, "\n\n", instruction);
  } else {
    out.push_back(engine::ChatMessage{"system", instruction});
    out.insert(out.end(), messages.begin(), messages.end());
  }
  return out;
}

}  // namespace

std::string AnswerInstruction(AnswerFormat format) {
  switch (format) {
    case AnswerFormat::kGsm8k:
      return "End your response with a final line of the form \"#### <number>\", where "
             "<number> is the final numeric answer only.";
    case AnswerFormat::kBoxed:
      return "Put your final answer within \\boxed{}, e.g. \\boxed{42}.";
    case AnswerFormat::kMultipleChoice:
      return "End your response with a final line of the form \"Answer: <letter>\", where "
             "<letter> is the letter (A, B, C, D or E) of the correct option.";
    case AnswerFormat::kNumber:
      return "End your response with a final line of the form \"Answer: <number>\", giving "
             "the number only.";
    case AnswerFormat::kAuto:
    case AnswerFormat::kAnswerLine:
      break;
  }
  return "End your response with a final line of the form \"Answer: <answer>\", giving the "
         "answer only.";
}

std::vector<engine::ChatMessage> AgentMessages(const std::vector<engine::ChatMessage>& question,
                                               const AgentSpec& agent, AnswerFormat format) {
  std::string instruction = absl::StrCat(kReasonStepByStep, " ", AnswerInstruction(format));
  if (!agent.role_prompt.empty()) absl::StrAppend(&instruction, "\n\n", agent.role_prompt);
  return WithSystemInstruction(question, instruction);
}

std::vector<engine::ChatMessage> VerifierMessages(std::string_view question,
                                                  std::string_view solution) {
  return {
      engine::ChatMessage{"system",
                          "You are a careful and strict grader. You check a proposed "
                          "solution to a question and say whether its final answer is "
                          "correct."},
      engine::ChatMessage{"user", absl::StrCat("Question:\n", Sv(question),
                                               "\n\nProposed solution:\n", Sv(solution),
                                               "\n\nIs this solution correct? Answer Yes or No.")},
  };
}

std::vector<engine::ChatMessage> SynthesisMessages(std::string_view question,
                                                   const std::vector<std::string>& candidates,
                                                   AnswerFormat format,
                                                   size_t max_chars_per_candidate) {
  CHECK_GE(max_chars_per_candidate, 64u) << "max_chars_per_candidate";
  std::string system = absl::StrCat(
      "You are given several candidate solutions to the same question, written "
      "independently. Read them, evaluate them critically (some of them may be wrong, and "
      "the majority is not always right), and write one final, correct solution of your "
      "own rather than copying one. ",
      kReasonStepByStep, " ", AnswerInstruction(format));
  std::string user = absl::StrCat("Question:\n", Sv(question), "\n\nCandidate solutions:");
  for (size_t i = 0; i < candidates.size(); ++i) {
    absl::StrAppend(&user, "\n\nSolution ", i + 1, ":\n",
                    TruncateMiddle(candidates[i], max_chars_per_candidate));
  }
  return {engine::ChatMessage{"system", std::move(system)},
          engine::ChatMessage{"user", std::move(user)}};
}

std::string TruncateMiddle(std::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  // Move each cut off a UTF-8 continuation byte (at most 3: longer runs are
  // invalid UTF-8 anyway).
  size_t head = max_chars / 2;
  for (int i = 0; i < 3 && head > 0 && IsContinuationByte(text[head]); ++i) --head;
  size_t tail = text.size() - max_chars / 2;
  for (int i = 0; i < 3 && tail < text.size() && IsContinuationByte(text[tail]); ++i) ++tail;
  size_t omitted = 0;  // characters: bytes that start one
  for (size_t i = head; i < tail; ++i) omitted += IsContinuationByte(text[i]) ? 0 : 1;
  return absl::StrCat(Sv(text.substr(0, head)), "\n[... ", omitted,
                      " characters omitted ...]\n", Sv(text.substr(tail)));
}

}  // namespace conclave::orchestrator
