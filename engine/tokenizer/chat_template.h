// Chat prompt rendering for the chat formats conclave knows, reproducing the
// models' own (Jinja) templates byte for byte without a template engine:
//   kChatMl:       <|im_start|>{role}\n{content}<|im_end|>\n ... and, with a
//                  generation prompt, <|im_start|>assistant\n
//   kChatMlSmolLm: kChatMl plus SmolLM2's default system message when the
//                  first message is not a system message
//   kGemma3:       <bos><start_of_turn>user\n{system\n\n}{content}<end_of_turn>\n
//                  roles user/model alternating, "assistant" -> "model",
//                  contents trimmed; generation prompt <start_of_turn>model\n
// The Gemma 3 output starts with the "<bos>" text, so tokenize it with
// add_special=false, parse_special=true (else BOS is doubled).
// Thread-safe: pure functions.
#ifndef CONCLAVE_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
#define CONCLAVE_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"

namespace conclave::engine {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (Gemma 3 also "model")
  std::string content;
};

enum class ChatFormat { kChatMl, kChatMlSmolLm, kGemma3 };

const char* ChatFormatName(ChatFormat format);

// The default system message SmolLM2-Instruct's template inserts.
inline constexpr char kSmolLmDefaultSystem[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// Picks the format from tokenizer.chat_template (ChatML markers, SmolLM2's
// default system message, Gemma's turn markers) or, when the file has no
// template, from general.architecture ("gemma3"). UNIMPLEMENTED when neither
// identifies a known format.
absl::StatusOr<ChatFormat> DetectChatFormat(const GgufFile& file);

// Renders `messages`. INVALID_ARGUMENT for no messages, a role the format
// does not know, or (Gemma 3) roles that do not alternate user/model after
// an optional leading system message.
absl::StatusOr<std::string> ApplyChatTemplate(ChatFormat format,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt);

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
