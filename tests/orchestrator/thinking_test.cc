// Thinking mode's orchestration against a scripted EngineClient: what each
// phase submits, how the phases' output is labelled, and cancellation. The
// tokenizer is SmolLM2's (skips when the model has not been fetched); no
// model runs.
#include "orchestrator/thinking.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "engine/model/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/paths.h"

namespace conclave::orchestrator {
namespace {

using engine::FinishReason;
using ::testing::Contains;
using ::testing::Not;

// Answers each Submit with the next script: its tokens in one delta and
// then the end of the request, or (open) the tokens only, leaving the
// request running until it is cancelled.
class ScriptedEngineClient : public EngineClient {
 public:
  struct Script {
    std::vector<int32_t> tokens;
    std::string text;
    FinishReason finish = FinishReason::kStopToken;
    bool open = false;
    absl::Status status;  // non-OK: the request fails as a whole
  };

  explicit ScriptedEngineClient(const engine::Model& model) : model_(model) {}

  absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(
      engine::EngineRequest request) override {
    if (scripts.empty()) return absl::ResourceExhaustedError("no script left");
    Script script = std::move(scripts.front());
    scripts.pop_front();
    const int prompt_tokens = static_cast<int>(request.prompt.size());
    submitted.push_back(std::move(request));
    auto usage = std::make_shared<engine::RequestUsage>();
    usage->prompt_tokens = prompt_tokens;
    usage->cached_prompt_tokens = prompt_tokens / 2;
    usage->generated_tokens = static_cast<int>(script.tokens.size());
    usage->queue_time = absl::Milliseconds(10) * static_cast<int64_t>(submitted.size());
    // The stream's abort callback needs the stream itself.
    auto self = std::make_shared<engine::RequestStream*>(nullptr);
    auto stream = std::make_shared<engine::RequestStream>(
        static_cast<int64_t>(submitted.size()), [this, self, usage](int64_t) {
          ++cancels;
          engine::SequenceDelta end;
          end.finish = FinishReason::kAborted;
          (*self)->Push(std::move(end), *usage);
          (*self)->Close(absl::OkStatus(), *usage);
        });
    *self = stream.get();
    engine::SequenceDelta d;
    for (int32_t id : script.tokens) {
      engine::TokenOutput t;
      t.id = id;
      d.tokens.push_back(std::move(t));
    }
    d.text = script.text;
    if (!script.open) d.finish = script.finish;
    stream->Push(std::move(d), *usage);
    if (!script.open) stream->Close(script.status, *usage);
    streams_.push_back(stream);
    return stream;
  }
  void AbortSequence(int64_t, int) override {}
  const engine::Tokenizer& tokenizer() const override { return model_.tokenizer(); }
  engine::ChatFormat chat_format() const override { return engine::ChatFormat::kChatMlSmolLm; }
  int context_length() const override { return 8192; }
  int max_sequences_per_request() const override { return 8; }
  const std::string& model_name() const override { return name_; }

  std::deque<Script> scripts;
  std::vector<engine::EngineRequest> submitted;
  int cancels = 0;

 private:
  const engine::Model& model_;
  const std::string name_ = "scripted";
  std::vector<std::shared_ptr<engine::RequestStream>> streams_;
};

struct Received {
  ThinkingSegment segment;
  std::string text;
};

class ThinkingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = conclave::testing::DefaultModelPath();
    if (path.empty()) return;
    absl::StatusOr<std::unique_ptr<engine::Model>> m = engine::Model::Load(path);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "SmolLM2 model not fetched";
    client_ = std::make_unique<ScriptedEngineClient>(*model_);
  }

  std::vector<int32_t> Encode(const std::string& text) const {
    return model_->tokenizer().Encode(text, /*add_special=*/false, /*parse_special=*/false);
  }
  ScriptedEngineClient::Script Says(const std::string& text, FinishReason finish) const {
    ScriptedEngineClient::Script script;
    script.tokens = Encode(text);
    script.text = text;
    script.finish = finish;
    return script;
  }
  ThinkingRequest Request(int max_tokens, int budget) const {
    ThinkingRequest r;
    r.prompt = Encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    r.max_tokens = max_tokens;
    r.thinking_budget = budget;
    r.stop = {"\n\n"};
    return r;
  }
  ThinkingGenerator::Sink Collect() {
    return [this](ThinkingSegment segment, const engine::SequenceDelta& d) {
      received_.push_back(Received{segment, d.text});
    };
  }

  static engine::Model* model_;
  std::unique_ptr<ScriptedEngineClient> client_;
  std::vector<Received> received_;
};

engine::Model* ThinkingTest::model_ = nullptr;

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_F(ThinkingTest, ThinksUntilTheMarkerThenAnswersAfterTheCue) {
  const std::string thought = "Two plus two is four.";
  client_->scripts.push_back(Says(thought, FinishReason::kStopString));
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  const ThinkingRequest request = Request(/*max_tokens=*/60, /*budget=*/40);
  absl::StatusOr<ThinkingResult> result = generator.Run(request, Collect());
  ASSERT_TRUE(result.ok()) << result.status();

  ASSERT_EQ(client_->submitted.size(), 2u);
  const engine::EngineRequest& think = client_->submitted[0];
  EXPECT_EQ(think.prompt, request.prompt);
  EXPECT_EQ(think.max_tokens, 40);
  EXPECT_THAT(think.stop, Contains(std::string(kFinalAnswerMarker)));
  EXPECT_THAT(think.stop, Not(Contains(std::string("\n\n"))));  // the answer's stops wait

  const int thought_tokens = static_cast<int>(Encode(thought).size());
  const engine::EngineRequest& answer = client_->submitted[1];
  EXPECT_EQ(answer.prompt, Concat(Concat(request.prompt, Encode(thought)), Encode(kAnswerCue)));
  EXPECT_EQ(answer.max_tokens, 60 - thought_tokens);
  EXPECT_EQ(answer.stop, request.stop);

  ASSERT_EQ(received_.size(), 2u);
  EXPECT_EQ(received_[0].segment, ThinkingSegment::kThinking);
  EXPECT_EQ(received_[0].text, thought);
  EXPECT_EQ(received_[1].segment, ThinkingSegment::kAnswer);
  EXPECT_EQ(received_[1].text, " 4");

  EXPECT_EQ(result->thinking_end, ThinkingEnd::kMarker);
  EXPECT_EQ(result->finish, FinishReason::kStopToken);
  EXPECT_EQ(result->thinking_tokens, thought_tokens);
  EXPECT_EQ(result->answer_tokens, static_cast<int>(Encode(" 4").size()));
  EXPECT_EQ(result->usage.prompt_tokens,
            static_cast<int>(request.prompt.size() + answer.prompt.size()));
  EXPECT_EQ(result->usage.generated_tokens, result->thinking_tokens + result->answer_tokens);
}

TEST_F(ThinkingTest, CutsTheThinkingWhenTheBudgetIsSpent) {
  client_->scripts.push_back(Says("First, I add the two numbers", FinishReason::kLength));
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  const int spent = static_cast<int>(Encode("First, I add the two numbers").size());
  absl::StatusOr<ThinkingResult> result = generator.Run(Request(100, spent), Collect());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->thinking_end, ThinkingEnd::kBudget);
  ASSERT_EQ(client_->submitted.size(), 2u);
  EXPECT_EQ(client_->submitted[1].max_tokens, 100 - spent);
}

TEST_F(ThinkingTest, TheAnswerPhaseIsAContinuationThatAFullQueueCannotRefuse) {
  client_->scripts.push_back(Says("First, I add the two numbers", FinishReason::kLength));
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  ASSERT_TRUE(generator.Run(Request(100, 8), Collect()).ok());
  ASSERT_EQ(client_->submitted.size(), 2u);
  EXPECT_FALSE(client_->submitted[0].continuation);  // the call's new work
  EXPECT_TRUE(client_->submitted[1].continuation);
}

TEST_F(ThinkingTest, AddsUpTheQueueTimeOfBothPhases) {
  client_->scripts.push_back(Says("First, I add the two numbers", FinishReason::kLength));
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  absl::StatusOr<ThinkingResult> result = generator.Run(Request(100, 8), Collect());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(client_->submitted.size(), 2u);
  // The scripted phases waited 10 ms and 20 ms.
  EXPECT_EQ(result->usage.queue_time, absl::Milliseconds(30));
}

TEST_F(ThinkingTest, AsksForTheAnswerWhenTheModelEndsItsTurn) {
  ScriptedEngineClient::Script ended = Says("It is 4.", FinishReason::kStopToken);
  const int32_t end_of_turn = *model_->tokenizer().FindToken("<|im_end|>");
  ended.tokens.push_back(end_of_turn);  // the end token has no text
  client_->scripts.push_back(ended);
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  const ThinkingRequest request = Request(100, 50);
  absl::StatusOr<ThinkingResult> result = generator.Run(request, Collect());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->thinking_end, ThinkingEnd::kModelStopped);
  ASSERT_EQ(client_->submitted.size(), 2u);
  EXPECT_EQ(client_->submitted[1].prompt,
            Concat(Concat(request.prompt, Encode("It is 4.")), Encode(kAnswerCue)));
}

TEST_F(ThinkingTest, AnswerPromptReusesTheTokensThatSpellTheTrimmedThinking) {
  const std::vector<int32_t> prompt = {1, 2, 3};
  const std::vector<int32_t> tokens = Encode("It is four.\n\n");
  const std::vector<int32_t> out =
      AnswerPrompt(model_->tokenizer(), prompt, tokens, "It is four.\n\n");
  ASSERT_GT(out.size(), prompt.size());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + 3), prompt);
  const std::vector<int32_t> rest(out.begin() + 3, out.end());
  EXPECT_EQ(model_->tokenizer().Decode(rest), "It is four.\n\nFinal answer:");
  // The tokens before the trailing whitespace are reused as they are.
  const std::vector<int32_t> kept = Encode("It is four.");
  EXPECT_EQ(std::vector<int32_t>(rest.begin(), rest.begin() + kept.size()), kept);
}

TEST_F(ThinkingTest, CancelDuringThinkingSkipsTheAnswer) {
  ScriptedEngineClient::Script open = Says("Let me think", FinishReason::kNone);
  open.open = true;
  client_->scripts.push_back(open);
  client_->scripts.push_back(Says(" 4", FinishReason::kStopToken));
  ThinkingGenerator generator(*client_);
  absl::StatusOr<ThinkingResult> result = generator.Run(
      Request(100, 50), [&](ThinkingSegment segment, const engine::SequenceDelta& d) {
        received_.push_back(Received{segment, d.text});
        if (d.finish == FinishReason::kNone) generator.Cancel();
      });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, FinishReason::kAborted);
  EXPECT_EQ(client_->submitted.size(), 1u);
  EXPECT_EQ(client_->cancels, 1);
  for (const Received& r : received_) EXPECT_EQ(r.segment, ThinkingSegment::kThinking);
}

TEST_F(ThinkingTest, CancelBeforeRunSubmitsNothing) {
  ThinkingGenerator generator(*client_);
  generator.Cancel();
  absl::StatusOr<ThinkingResult> result = generator.Run(Request(100, 50), Collect());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, FinishReason::kAborted);
  EXPECT_TRUE(client_->submitted.empty());
}

TEST_F(ThinkingTest, EngineErrorsComeBackAsTheStatus) {
  ScriptedEngineClient::Script failed = Says("", FinishReason::kError);
  failed.status = absl::InternalError("backend failed");
  client_->scripts.push_back(failed);
  ThinkingGenerator generator(*client_);
  absl::StatusOr<ThinkingResult> result = generator.Run(Request(100, 50), Collect());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(client_->submitted.size(), 1u);
}

TEST_F(ThinkingTest, RejectsBudgetsOutsideMaxTokens) {
  ThinkingGenerator generator(*client_);
  EXPECT_EQ(generator.Run(Request(10, 10), Collect()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(generator.Run(Request(10, 0), Collect()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(generator.Run(Request(1, 1), Collect()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(client_->submitted.empty());
}

TEST(ThinkingInstructionTest, JoinsALeadingSystemMessageOrAddsOne) {
  std::vector<engine::ChatMessage> with_system =
      WithThinkingInstruction({{"system", "Be brief."}, {"user", "2+2?"}});
  ASSERT_EQ(with_system.size(), 2u);
  EXPECT_EQ(with_system[0].content, std::string("Be brief.\n\n") + kThinkingInstruction);
  std::vector<engine::ChatMessage> without = WithThinkingInstruction({{"user", "2+2?"}});
  ASSERT_EQ(without.size(), 2u);
  EXPECT_EQ(without[0].role, "system");
  EXPECT_EQ(without[0].content, kThinkingInstruction);
  EXPECT_EQ(without[1].content, "2+2?");
}

}  // namespace
}  // namespace conclave::orchestrator
