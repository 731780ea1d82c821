#include "engine/tokenizer/chat_template.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/paths.h"

namespace conclave::engine {
namespace {

// Expected strings were rendered with jinja2 from SmolLM2-135M-Instruct's
// GGUF tokenizer.chat_template and from Gemma 3's HF chat template.
const std::vector<ChatMessage> kUserOnly = {{"user", "Hi there"}};
const std::vector<ChatMessage> kFullChat = {{"system", "Be brief."},
                                            {"user", "  What is 2+2?\n"},
                                            {"assistant", "4"},
                                            {"user", "Thanks"}};

TEST(ChatTemplateTest, SmolLmInsertsItsDefaultSystemMessage) {
  absl::StatusOr<std::string> out =
      ApplyChatTemplate(ChatFormat::kChatMlSmolLm, kUserOnly, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
            "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi "
            "there<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, SmolLmKeepsAGivenSystemMessageAndContentVerbatim) {
  absl::StatusOr<std::string> out =
      ApplyChatTemplate(ChatFormat::kChatMlSmolLm, kFullChat, false);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  What is "
            "2+2?\n<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>"
            "user\nThanks<|im_end|>\n");
}

TEST(ChatTemplateTest, PlainChatMlAddsNoSystemMessage) {
  absl::StatusOr<std::string> out = ApplyChatTemplate(ChatFormat::kChatMl, kUserOnly, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, GemmaFoldsSystemIntoFirstUserTurnAndRenamesAssistant) {
  absl::StatusOr<std::string> out = ApplyChatTemplate(ChatFormat::kGemma3, kFullChat, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<bos><start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n"
            "<start_of_turn>model\n4<end_of_turn>\n<start_of_turn>user\nThanks"
            "<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplateTest, GemmaWithoutGenerationPrompt) {
  absl::StatusOr<std::string> out = ApplyChatTemplate(ChatFormat::kGemma3, kUserOnly, false);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<bos><start_of_turn>user\nHi there<end_of_turn>\n");
}

TEST(ChatTemplateTest, RejectsEmptyConversationsAndUnknownRoles) {
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatMl, {}, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatMl, {{"tool", "x"}}, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kGemma3, {{"robot", "x"}}, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, GemmaRequiresAlternatingRoles) {
  const std::vector<ChatMessage> twice = {{"user", "a"}, {"user", "b"}};
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kGemma3, twice, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<ChatMessage> late_system = {{"user", "a"}, {"system", "b"}};
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kGemma3, late_system, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, DetectsTheFormatOfTheShippedModels) {
  const std::string smol = conclave::testing::DefaultModelPath();
  if (!smol.empty()) {
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(smol);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(DetectChatFormat(**file).value(), ChatFormat::kChatMlSmolLm);
  }
  const std::string gemma = conclave::testing::GemmaModelPath();
  if (!gemma.empty()) {
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(gemma);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(DetectChatFormat(**file).value(), ChatFormat::kGemma3);
  }
}

}  // namespace
}  // namespace conclave::engine
