// OpenAI chat completion bodies -> GeneratePlan, and a run's output ->
// chat.completion / chat.completion.chunk objects: every refusal names its
// field in `param`, fields OpenAI defines but conclave does not implement
// are refused by name, OpenAI's defaults apply, and the response objects
// have OpenAI's shape. No server, no model.
#include "server/http/chat_completions.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_response.h"

namespace conclave::server::http {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

RequestLimits Limits() {
  RequestLimits l;
  l.model_id = "tiny";
  l.context_length = 256;
  l.vocab_size = 1000;
  l.max_prompt_tokens = 200;
  l.max_tokens_limit = 255;
  l.max_agents = 4;
  return l;
}

constexpr char kAsk[] = R"("messages": [{"role": "user", "content": "hi"}])";

// A body of kAsk plus `more` (",\"field\": value").
std::string Ask(const std::string& more = "") { return absl::StrCat("{", kAsk, more, "}"); }

absl::StatusOr<ChatRequest> Parse(const std::string& body) {
  return ParseChatCompletionRequest(body, Limits());
}

// "code: param: message" of a refusal, or "OK".
std::string Refusal(const std::string& body) {
  absl::StatusOr<ChatRequest> r = Parse(body);
  if (r.ok()) return "OK";
  return absl::StrCat(absl::StatusCodeToString(r.status().code()), ": ",
                      ParamOf(r.status()).value_or("(none)"), ": ", r.status().message());
}

TEST(ChatCompletionsTest, AcceptsAMinimalBodyWithOpenAisDefaults) {
  absl::StatusOr<ChatRequest> r = Parse(Ask());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->plan.mode, GenerateMode::kInstant);
  ASSERT_EQ(r->plan.messages.size(), 1u);
  EXPECT_EQ(r->plan.messages[0].role, "user");
  EXPECT_EQ(r->plan.messages[0].content, "hi");
  EXPECT_FLOAT_EQ(r->plan.sampling.temperature, 1.0f);  // OpenAI's, not the gRPC API's 0.8
  EXPECT_FLOAT_EQ(r->plan.sampling.top_p, 1.0f);
  EXPECT_EQ(r->plan.n, 1);
  EXPECT_FALSE(r->plan.max_tokens.has_value());
  EXPECT_FALSE(r->plan.seed_given);
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->logprobs);
  EXPECT_EQ(r->plan.sampling.logprobs, 0);
}

TEST(ChatCompletionsTest, MapsEverySupportedField) {
  absl::StatusOr<ChatRequest> r = Parse(
      R"({"model": "tiny",
          "messages": [{"role": "developer", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "Two"},
                                                    {"type": "text", "text": "parts"}]},
                       {"role": "assistant", "content": null},
                       {"role": "user", "content": "again", "name": "bob"}],
          "temperature": 0.5, "top_p": 0.9, "n": 3, "max_completion_tokens": 12,
          "stop": ["\n\n", "END"], "seed": 42, "logprobs": true, "top_logprobs": 5,
          "presence_penalty": 0.5, "frequency_penalty": -0.5, "stream": true,
          "stream_options": {"include_usage": true}, "user": "ignored",
          "tool_choice": "none", "response_format": {"type": "text"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  const GeneratePlan& p = r->plan;
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");  // developer is OpenAI's newer name
  EXPECT_EQ(p.messages[1].content, "Two\nparts");
  EXPECT_EQ(p.messages[2].role, "assistant");
  EXPECT_EQ(p.messages[2].content, "");
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(p.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.sampling.frequency_penalty, -0.5f);
  EXPECT_EQ(p.n, 3);
  EXPECT_EQ(p.max_tokens, 12);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(p.seed_given);
  EXPECT_EQ(p.sampling.seed, 42u);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(p.sampling.logprobs, 5);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(ChatCompletionsTest, AcceptsAStopStringAndANegativeSeed) {
  absl::StatusOr<ChatRequest> r = Parse(Ask(R"(, "stop": "END", "seed": -1, "max_tokens": 7)"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->plan.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r->plan.sampling.seed, ~uint64_t{0});  // wraps: still one generator
  EXPECT_EQ(r->plan.max_tokens, 7);
}

TEST(ChatCompletionsTest, TreatsNullAsAbsent) {
  absl::StatusOr<ChatRequest> r =
      Parse(Ask(R"(, "temperature": null, "n": null, "stop": null, "model": null)"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->plan.sampling.temperature, 1.0f);
  EXPECT_EQ(r->plan.n, 1);
}

TEST(ChatCompletionsTest, RefusesBodiesThatAreNotAJsonObject) {
  EXPECT_THAT(Refusal("{\"messages\": ["), HasSubstr("not valid JSON (error at byte"));
  EXPECT_THAT(Refusal("[1, 2]"), HasSubstr("must be a JSON object, not array"));
  EXPECT_THAT(Refusal("{\"a\": \"\xff\"}"), HasSubstr("not valid UTF-8 (byte 7)"));
  EXPECT_THAT(Refusal(std::string(100, '[') + std::string(100, ']')),
              HasSubstr("nests JSON 100 levels deep; at most 64"));
  EXPECT_THAT(Refusal(Ask(R"(, "temperature": 1e999)")), HasSubstr("out of range"));
}

TEST(ChatCompletionsTest, ParseErrorsNeverQuoteTheBody) {
  const std::string secret = "my secret prompt";
  absl::StatusOr<ChatRequest> r =
      Parse(absl::StrCat(R"({"messages": [{"role": "user", "content": ")", secret, "\"]}"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), ::testing::Not(HasSubstr("secret")));
}

TEST(ChatCompletionsTest, NamesTheMessagesFieldAtFault) {
  EXPECT_EQ(Refusal("{}"), "INVALID_ARGUMENT: messages: messages is required");
  EXPECT_EQ(Refusal(R"({"messages": []})"),
            "INVALID_ARGUMENT: messages: messages is empty; give at least one message");
  EXPECT_EQ(Refusal(R"({"messages": "hi"})"),
            "INVALID_ARGUMENT: messages: messages must be an array, not a string");
  EXPECT_THAT(Refusal(R"({"messages": [{"content": "hi"}]})"),
              HasSubstr("messages[0].role: messages[0].role must be a string, not null"));
  EXPECT_THAT(Refusal(R"({"messages": [{"role": "robot", "content": "hi"}]})"),
              HasSubstr("messages[0].role: messages[0].role \"robot\" must be system"));
  EXPECT_THAT(Refusal(R"({"messages": [{"role": "user"}]})"),
              HasSubstr("messages[0].content: messages[0].content is required"));
  EXPECT_THAT(
      Refusal(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
      HasSubstr("messages[0].content[0].type: messages[0].content[0].type \"image_url\" is not "
                "supported"));
  EXPECT_THAT(Refusal(R"({"messages": [{"role": "user", "content": "a", "mood": 1}]})"),
              HasSubstr("messages[0].mood: unrecognized field messages[0].mood"));
  EXPECT_THAT(Refusal(R"({"messages": [{"role": "tool", "content": "a"}]})"),
              HasSubstr("messages[0].role: messages[0].role is not supported"));
  EXPECT_THAT(Refusal(R"({"messages": [{"role": "assistant", "content": null,
                                         "tool_calls": [{"id": "x"}]}]})"),
              HasSubstr("messages[0].tool_calls: messages[0].tool_calls is not supported"));
}

TEST(ChatCompletionsTest, NamesTheFieldOfEveryTypeOrRangeError) {
  EXPECT_EQ(Refusal(Ask(R"(, "temperature": "hot")")),
            "INVALID_ARGUMENT: temperature: temperature must be a number, not a string");
  EXPECT_EQ(Refusal(Ask(R"(, "temperature": 2.5)")),
            "INVALID_ARGUMENT: temperature: temperature=2.5 must be in [0, 2]");
  EXPECT_EQ(Refusal(Ask(R"(, "top_p": 0)")), "INVALID_ARGUMENT: top_p: top_p=0 must be in (0, 1]");
  EXPECT_EQ(Refusal(Ask(R"(, "presence_penalty": 3)")),
            "INVALID_ARGUMENT: presence_penalty: presence_penalty=3 must be in [-2, 2]");
  EXPECT_EQ(Refusal(Ask(R"(, "n": 5)")),
            "INVALID_ARGUMENT: n: n=5 must be in [1, 4] (the server's --max-agents)");
  EXPECT_EQ(Refusal(Ask(R"(, "n": 1.5)")),
            "INVALID_ARGUMENT: n: n must be an integer, not a number");
  EXPECT_EQ(Refusal(Ask(R"(, "max_tokens": 0)")),
            "INVALID_ARGUMENT: max_tokens: max_tokens=0 must be in [1, 255] (the server's "
            "--max-tokens-limit)");
  EXPECT_EQ(Refusal(Ask(R"(, "max_completion_tokens": 256)")),
            "INVALID_ARGUMENT: max_completion_tokens: max_completion_tokens=256 must be in "
            "[1, 255] (the server's --max-tokens-limit)");
  EXPECT_THAT(Refusal(Ask(R"(, "max_tokens": 5, "max_completion_tokens": 6)")),
              HasSubstr("max_tokens: max_tokens=5 and max_completion_tokens=6 disagree"));
  EXPECT_EQ(Refusal(Ask(R"(, "top_logprobs": 2)")),
            "INVALID_ARGUMENT: top_logprobs: top_logprobs needs logprobs=true");
  EXPECT_EQ(Refusal(Ask(R"(, "logprobs": true, "top_logprobs": 21)")),
            "INVALID_ARGUMENT: top_logprobs: top_logprobs=21 must be in [0, 20]");
  EXPECT_EQ(Refusal(Ask(R"(, "logprobs": 1)")),
            "INVALID_ARGUMENT: logprobs: logprobs must be a boolean, not an integer");
  EXPECT_EQ(Refusal(Ask(R"(, "seed": "7")")),
            "INVALID_ARGUMENT: seed: seed must be an integer, not a string");
  EXPECT_EQ(Refusal(Ask(R"(, "stop": [1])")),
            "INVALID_ARGUMENT: stop[0]: stop[0] must be a string, not an integer");
  EXPECT_THAT(Refusal(Ask(R"(, "stop": [""])")), HasSubstr("INVALID_ARGUMENT: stop: "));
  EXPECT_EQ(Refusal(Ask(R"(, "stream_options": {"include_usage": true})")),
            "INVALID_ARGUMENT: stream_options: stream_options is only allowed with "
            "stream=true");
  EXPECT_EQ(Refusal(Ask(R"(, "stream": true, "stream_options": {"include_usage": 1})")),
            "INVALID_ARGUMENT: stream_options.include_usage: stream_options.include_usage "
            "must be a boolean, not an integer");
}

TEST(ChatCompletionsTest, AnotherModelIsNotFound) {
  absl::StatusOr<ChatRequest> r = Parse(Ask(R"(, "model": "gpt-4o")"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParamOf(r.status()), "model");
  EXPECT_EQ(ErrorCodeOf(r.status()), "model_not_found");
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("\"gpt-4o\" does not exist; this server serves \"tiny\""));
  EXPECT_EQ(ToHttpError(r.status()).status, 404);
  EXPECT_TRUE(Parse(Ask(R"(, "model": "")")).ok());
}

TEST(ChatCompletionsTest, RefusesOpenAiFieldsItDoesNotImplementByName) {
  for (const char* field :
       {R"("tools": [{"type": "function", "function": {"name": "f"}}])", R"("tool_choice": "auto")",
        R"("functions": [{"name": "f"}])", R"("function_call": "auto")",
        R"("response_format": {"type": "json_object"})", R"("logit_bias": {"50256": -100})",
        R"("audio": {"voice": "alloy"})", R"("modalities": ["text", "audio"])",
        R"("prediction": {"type": "content"})", R"("store": true)", R"("reasoning_effort": "low")",
        R"("web_search_options": {})"}) {
    const std::string body = Ask(absl::StrCat(", ", field));
    const std::string name = std::string(field).substr(1, std::string(field).find('"', 1) - 1);
    EXPECT_THAT(Refusal(body), HasSubstr(absl::StrCat("INVALID_ARGUMENT: ", name, ": ", name,
                                                      " is not supported by this server")))
        << body;
  }
}

TEST(ChatCompletionsTest, AcceptsHarmlessOpenAiFieldsAndRefusesUnknownOnes) {
  EXPECT_EQ(Refusal(Ask(R"(, "user": "u1", "metadata": {"a": "b"}, "service_tier": "auto",
                        "parallel_tool_calls": true, "store": false, "tools": [],
                        "logit_bias": {}, "modalities": ["text"])")),
            "OK");
  EXPECT_EQ(Refusal(Ask(R"(, "temprature": 0.5)")),
            "INVALID_ARGUMENT: temprature: unrecognized request argument supplied: temprature");
}

// Token i renders as "<i>".
std::string Piece(int32_t id) { return absl::StrCat("<", id, ">"); }

engine::TokenOutput Token(int32_t id, float logprob, std::vector<engine::TokenLogprob> top = {}) {
  engine::TokenOutput t;
  t.id = id;
  t.logprob = logprob;
  t.top = std::move(top);
  return t;
}

TEST(ChatCompletionsTest, BuildsAChatCompletionWithUsageAndLogprobs) {
  ChatMeta meta{"chatcmpl-7", 1700000000, "tiny"};
  std::vector<ChatChoice> choices(2);
  choices[0].text = "Hi";
  choices[0].tokens = {Token(5, -0.25f, {{5, -0.25f}, {9, -1.5f}})};
  choices[0].finish = engine::FinishReason::kStopToken;
  choices[1].text = "Hello";
  choices[1].tokens = {Token(6, -0.5f)};
  choices[1].finish = engine::FinishReason::kLength;
  engine::RequestUsage usage;
  usage.prompt_tokens = 10;
  usage.cached_prompt_tokens = 4;
  usage.generated_tokens = 3;
  const Json j = ChatCompletionJson(meta, choices, usage, /*logprobs=*/true, Piece);
  EXPECT_EQ(j["id"], "chatcmpl-7");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hi");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  const Json& lp = j["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "<5>");
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(lp["bytes"], Json::array({'<', '5', '>'}));
  ASSERT_EQ(lp["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][1]["token"], "<9>");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"], 13);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  // Without logprobs the field is null.
  EXPECT_TRUE(
      ChatCompletionJson(meta, choices, usage, false, Piece)["choices"][0]["logprobs"].is_null());
}

TEST(ChatCompletionsTest, TokenBytesKeepHalfCharactersThatTheTextCannot) {
  // A piece holding the first two bytes of "€" (E2 82 AC).
  const auto half = [](int32_t) { return std::string("\xE2\x82"); };
  const Json lp = LogprobsJson({Token(1, -1.0f)}, half);
  EXPECT_EQ(lp["content"][0]["bytes"], Json::array({0xE2, 0x82}));
  // The text is not UTF-8; dumping replaces it instead of throwing.
  EXPECT_THAT(DumpJson(lp), HasSubstr("\"token\":\"\xEF\xBF\xBD"));
}

TEST(ChatCompletionsTest, BuildsStreamingChunks) {
  ChatMeta meta{"chatcmpl-8", 1700000001, "tiny"};
  const Json first = ChatChunkJson(meta, 1, {{"role", "assistant"}, {"content", ""}}, nullptr,
                                   nullptr, /*include_usage=*/true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["index"], 1);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  const Json last = ChatChunkJson(meta, 0, Json::object(), nullptr,
                                  FinishReasonJson(engine::FinishReason::kStopString), false);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(last.contains("usage"));
  engine::RequestUsage usage;
  usage.prompt_tokens = 2;
  usage.generated_tokens = 5;
  const Json u = UsageChunkJson(meta, usage);
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  EXPECT_TRUE(FinishReasonJson(engine::FinishReason::kAborted).is_null());
}

}  // namespace
}  // namespace conclave::server::http
