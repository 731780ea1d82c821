#include "engine/tokenizer/chat_template.h"

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/unicode.h"

namespace conclave::engine {
namespace {

// Jinja's `trim` filter is Python's str.strip(): drops leading and trailing
// code points for which str.isspace() is true.
bool IsPythonSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string Trim(std::string_view s) {
  size_t begin = 0;
  size_t end = s.size();
  size_t first_kept = s.size();
  size_t offset = 0;
  while (offset < s.size()) {
    const size_t start = offset;
    const uint32_t c = DecodeUtf8(s, &offset);
    if (!IsPythonSpace(c)) {
      if (first_kept == s.size()) first_kept = start;
      end = offset;
    }
  }
  begin = first_kept;
  if (begin >= end) return "";
  return std::string(s.substr(begin, end - begin));
}

absl::StatusOr<std::string> RenderChatMl(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt,
                                         bool default_system) {
  std::string out;
  if (default_system && messages.front().role != "system") {
    absl::StrAppend(&out, "<|im_start|>system\n", kSmolLmDefaultSystem, "<|im_end|>\n");
  }
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat role \"", m.role, "\" is not one of system, user, assistant"));
    }
    absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) absl::StrAppend(&out, "<|im_start|>assistant\n");
  return out;
}

absl::StatusOr<std::string> RenderGemma3(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt) {
  std::string out = "<bos>";
  size_t first = 0;
  std::string first_user_prefix;
  if (messages.front().role == "system") {
    first_user_prefix = absl::StrCat(messages.front().content, "\n\n");
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool expect_user = (i - first) % 2 == 0;
    std::string role = m.role == "assistant" ? "model" : m.role;
    if (role != "user" && role != "model") {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat role \"", m.role, "\" is not valid for Gemma 3 at message ", i,
          " (system is only allowed first)"));
    }
    if ((role == "user") != expect_user) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Gemma 3 conversation roles must alternate user/assistant; message ", i,
          " is \"", m.role, "\""));
    }
    absl::StrAppend(&out, "<start_of_turn>", role, "\n",
                    i == first ? first_user_prefix : "", Trim(m.content),
                    "<end_of_turn>\n");
  }
  if (add_generation_prompt) absl::StrAppend(&out, "<start_of_turn>model\n");
  return out;
}

}  // namespace

const char* ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatMl: return "chatml";
    case ChatFormat::kChatMlSmolLm: return "chatml-smollm";
    case ChatFormat::kGemma3: return "gemma3";
  }
  return "unknown";
}

absl::StatusOr<ChatFormat> DetectChatFormat(const GgufFile& file) {
  const std::optional<std::string> tmpl = file.GetString("tokenizer.chat_template");
  if (tmpl) {
    if (tmpl->find("<start_of_turn>") != std::string::npos) return ChatFormat::kGemma3;
    if (tmpl->find("<|im_start|>") != std::string::npos) {
      return tmpl->find(kSmolLmDefaultSystem) != std::string::npos
                 ? ChatFormat::kChatMlSmolLm
                 : ChatFormat::kChatMl;
    }
  }
  const std::string arch = file.GetString("general.architecture").value_or("");
  if (arch == "gemma3") return ChatFormat::kGemma3;
  return absl::UnimplementedError(absl::StrCat(
      "no known chat format for general.architecture=\"", arch, "\"",
      tmpl ? " and its tokenizer.chat_template" : " (no tokenizer.chat_template)"));
}

absl::StatusOr<std::string> ApplyChatTemplate(ChatFormat format,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) {
  if (messages.empty()) {
    return absl::InvalidArgumentError("chat needs at least one message");
  }
  switch (format) {
    case ChatFormat::kChatMl:
      return RenderChatMl(messages, add_generation_prompt, /*default_system=*/false);
    case ChatFormat::kChatMlSmolLm:
      return RenderChatMl(messages, add_generation_prompt, /*default_system=*/true);
    case ChatFormat::kGemma3:
      return RenderGemma3(messages, add_generation_prompt);
  }
  return absl::InvalidArgumentError("unknown chat format");
}

}  // namespace conclave::engine
