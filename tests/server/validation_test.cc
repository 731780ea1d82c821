// Request validation: every rejected request gets INVALID_ARGUMENT naming the
// field and its limit; accepted requests get the documented defaults.
#include "server/validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::server {
namespace {

using ::testing::HasSubstr;

RequestLimits Limits() {
  RequestLimits l;
  l.model_id = "tiny";
  l.context_length = 256;
  l.vocab_size = 1000;
  l.max_prompt_tokens = 200;
  l.max_tokens_limit = 255;
  l.max_agents = 8;
  return l;
}

v1::GenerateRequest UserAsks(const std::string& text) {
  v1::GenerateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(text);
  return r;
}

// The request's error message, or "OK".
std::string Error(const v1::GenerateRequest& r) {
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(r, Limits());
  if (plan.ok()) return "OK";
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << plan.status();
  return std::string(plan.status().message());
}

std::string Error(const v1::ContemplateRequest& r) {
  absl::Status s = ValidateContemplateRequest(r, Limits());
  if (s.ok()) return "OK";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(ValidationTest, AcceptsAPlainQuestionWithTheDocumentedDefaults) {
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(UserAsks("hi"), Limits());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, GenerateMode::kInstant);
  ASSERT_EQ(plan->messages.size(), 1u);
  EXPECT_EQ(plan->messages[0].role, "user");
  EXPECT_EQ(plan->messages[0].content, "hi");
  EXPECT_FLOAT_EQ(plan->sampling.temperature, kDefaultTemperature);
  EXPECT_FLOAT_EQ(plan->sampling.top_p, kDefaultTopP);
  EXPECT_EQ(plan->sampling.top_k, 0);
  EXPECT_FLOAT_EQ(plan->sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(plan->seed_given);
  EXPECT_FALSE(plan->max_tokens.has_value());
}

TEST(ValidationTest, TakesExplicitSamplingAsGiven) {
  v1::GenerateRequest r = UserAsks("hi");
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_top_p(0.5f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_seed(7);
  r.mutable_sampling()->set_logprobs(20);
  r.set_max_tokens(16);
  r.add_stop("\n\n");
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(r, Limits());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(plan->sampling.top_p, 0.5f);
  EXPECT_EQ(plan->sampling.top_k, 40);
  EXPECT_TRUE(plan->seed_given);
  EXPECT_EQ(plan->sampling.seed, 7u);
  EXPECT_EQ(plan->sampling.logprobs, 20);
  EXPECT_EQ(plan->max_tokens, 16);
  EXPECT_EQ(plan->stop, std::vector<std::string>{"\n\n"});
}

TEST(ValidationTest, RolesComeFromTheEnumOrTheirNames) {
  v1::GenerateRequest r;
  r.add_messages()->set_role_name("system");
  r.add_messages()->set_role(v1::ROLE_USER);
  r.add_messages()->set_role_name("model");
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(r, Limits());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->messages[0].role, "system");
  EXPECT_EQ(plan->messages[1].role, "user");
  EXPECT_EQ(plan->messages[2].role, "assistant");
}

TEST(ValidationTest, RejectsAnEmptyConversation) {
  EXPECT_THAT(Error(v1::GenerateRequest()), HasSubstr("messages is empty"));
}

TEST(ValidationTest, RejectsUnknownRolesNamingTheMessage) {
  v1::GenerateRequest r = UserAsks("hi");
  r.add_messages()->set_role_name("bot");
  EXPECT_THAT(Error(r), HasSubstr("messages[1].role_name \"bot\" is not a known role"));
  v1::GenerateRequest unset = UserAsks("hi");
  unset.add_messages()->set_content("who am I?");
  EXPECT_THAT(Error(unset), HasSubstr("messages[1].role is unset"));
  v1::GenerateRequest bad_enum = UserAsks("hi");
  bad_enum.mutable_messages(0)->set_role(static_cast<v1::Role>(9));
  EXPECT_THAT(Error(bad_enum), HasSubstr("messages[0].role=9"));
}

TEST(ValidationTest, RejectsContentThatIsNotUtf8) {
  EXPECT_THAT(Error(UserAsks("caf\xC3")), HasSubstr("messages[0].content is not valid UTF-8 (byte 3)"));
  EXPECT_THAT(Error(UserAsks("\xED\xA0\x80")), HasSubstr("not valid UTF-8"));  // a surrogate
  EXPECT_EQ(Error(UserAsks("caf\xC3\xA9 \xF0\x9F\x98\x80")), "OK");
}

TEST(ValidationTest, FindsTheFirstIllFormedByte) {
  EXPECT_EQ(FindInvalidUtf8("plain"), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);          // overlong
  EXPECT_EQ(FindInvalidUtf8("ab\xE0\x80\x80"), 2u);    // overlong 3-byte
  EXPECT_EQ(FindInvalidUtf8("a\xF4\x90\x80\x80"), 1u);  // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("a\x80"), 1u);             // stray continuation
  EXPECT_EQ(FindInvalidUtf8("\xE2\x82"), 0u);          // truncated
  EXPECT_EQ(FindInvalidUtf8("\xF4\x8F\xBF\xBF"), absl::string_view::npos);  // U+10FFFF
}

TEST(ValidationTest, RejectsSamplingOutOfRangeNamingTheField) {
  auto with = [](auto set) {
    v1::GenerateRequest r = UserAsks("hi");
    set(*r.mutable_sampling());
    return Error(r);
  };
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_temperature(-1); }),
              HasSubstr("sampling.temperature=-1 must be in [0, 2]"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_temperature(NAN); }),
              HasSubstr("sampling.temperature"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_top_p(0); }),
              HasSubstr("sampling.top_p=0 must be in (0, 1]"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_top_p(1.5f); }),
              HasSubstr("sampling.top_p=1.5"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_top_k(-1); }), HasSubstr("sampling.top_k=-1"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_top_k(1001); }),
              HasSubstr("sampling.top_k=1001 must be in [0, 1000]"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_min_p(2); }), HasSubstr("sampling.min_p=2"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_presence_penalty(3); }),
              HasSubstr("sampling.presence_penalty=3"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_frequency_penalty(-3); }),
              HasSubstr("sampling.frequency_penalty=-3"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_repetition_penalty(0); }),
              HasSubstr("sampling.repetition_penalty=0"));
  EXPECT_THAT(with([](v1::SamplingParams& s) { s.set_logprobs(21); }),
              HasSubstr("sampling.logprobs=21 must be in [0, 20]"));
}

TEST(ValidationTest, RejectsAnUnknownModelNamingTheServedOne) {
  v1::GenerateRequest r = UserAsks("hi");
  r.set_model("gpt-9");
  EXPECT_THAT(Error(r), HasSubstr("model \"gpt-9\" is not served here; ListModels lists \"tiny\""));
  r.set_model("tiny");
  EXPECT_EQ(Error(r), "OK");
}

TEST(ValidationTest, RejectsModesThatGenerateDoesNotServe) {
  v1::GenerateRequest r = UserAsks("hi");
  r.set_mode(v1::MODE_CONTEMPLATING);
  EXPECT_THAT(Error(r), HasSubstr("Contemplate RPC"));
  r.set_mode(static_cast<v1::Mode>(42));
  EXPECT_THAT(Error(r), HasSubstr("mode=42"));
}

TEST(ValidationTest, MaxTokensMustBeWithinTheServerLimit) {
  v1::GenerateRequest r = UserAsks("hi");
  r.set_max_tokens(0);
  EXPECT_THAT(Error(r), HasSubstr("max_tokens=0 must be in [1, 255]"));
  r.set_max_tokens(256);
  EXPECT_THAT(Error(r), HasSubstr("max_tokens=256 must be in [1, 255] (the server's --max-tokens-limit)"));
}

TEST(ValidationTest, ThinkingBudgetOnlyInThinkingModeAndBelowMaxTokens) {
  v1::GenerateRequest r = UserAsks("hi");
  r.set_thinking_budget(8);
  EXPECT_THAT(Error(r), HasSubstr("thinking_budget applies only to MODE_THINKING"));
  r.set_mode(v1::MODE_THINKING);
  r.set_max_tokens(8);
  EXPECT_THAT(Error(r), HasSubstr("thinking_budget=8 must be in [1, 7] (max_tokens - 1)"));
  r.set_max_tokens(1);
  EXPECT_THAT(Error(r), HasSubstr("max_tokens=1 must be in [2, 255]"));
  r.set_max_tokens(9);
  EXPECT_EQ(Error(r), "OK");
}

TEST(ValidationTest, RawPromptIsExclusiveWithMessagesAndInstantOnly) {
  v1::GenerateRequest r = UserAsks("hi");
  r.set_prompt("Once upon a time");
  EXPECT_THAT(Error(r), HasSubstr("messages and prompt are exclusive"));
  v1::GenerateRequest raw;
  raw.set_prompt("Once upon a time");
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(raw, Limits());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->raw_prompt, "Once upon a time");
  raw.set_mode(v1::MODE_THINKING);
  EXPECT_THAT(Error(raw), HasSubstr("only for MODE_INSTANT"));
}

TEST(ValidationTest, StopStringsKeepTheEngineLimits) {
  v1::GenerateRequest r = UserAsks("hi");
  r.add_stop("");
  EXPECT_THAT(Error(r), HasSubstr("stop[0]"));
  v1::GenerateRequest many = UserAsks("hi");
  const std::string x = "x";
  for (int i = 0; i < 17; ++i) many.add_stop(x);
  EXPECT_THAT(Error(many), HasSubstr("stop"));
}

TEST(ValidationTest, ResolvesDefaultBudgetsWithinTheContext) {
  absl::StatusOr<GeneratePlan> instant = ValidateGenerateRequest(UserAsks("hi"), Limits());
  ASSERT_TRUE(instant.ok());
  absl::StatusOr<TokenBudget> b = ResolveTokenBudget(*instant, 56, Limits());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->max_tokens, 200);  // 256 - 56: the context caps the default 512

  v1::GenerateRequest t = UserAsks("hi");
  t.set_mode(v1::MODE_THINKING);
  t.set_max_tokens(100);
  absl::StatusOr<GeneratePlan> thinking = ValidateGenerateRequest(t, Limits());
  ASSERT_TRUE(thinking.ok());
  b = ResolveTokenBudget(*thinking, 50, Limits());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->max_tokens, 100);
  EXPECT_EQ(b->thinking_budget, 75);  // three quarters
}

TEST(ValidationTest, RejectsPromptsOverTheLimitOrTheContext) {
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(UserAsks("hi"), Limits());
  ASSERT_TRUE(plan.ok());
  absl::StatusOr<TokenBudget> b = ResolveTokenBudget(*plan, 201, Limits());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("prompt is 201 tokens"));
  EXPECT_THAT(b.status().message(), HasSubstr("max_prompt_tokens=200"));

  v1::GenerateRequest r = UserAsks("hi");
  r.set_max_tokens(100);
  plan = ValidateGenerateRequest(r, Limits());
  ASSERT_TRUE(plan.ok());
  b = ResolveTokenBudget(*plan, 200, Limits());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(),
              HasSubstr("prompt of 200 tokens + max_tokens=100 exceeds the model's context of 256"));
}

TEST(ValidationTest, ThinkingModeNeedsAMaxTokensLimitOfTwo) {
  // Found by generate_request_fuzz (fuzz/corpus/generate_request_fuzz/
  // regress_thinking_max_tokens_limit_1): with --max-tokens-limit 1 the
  // default budget was one token, and the thinking budget clamp(0, 1, 0).
  RequestLimits limits = Limits();
  limits.max_tokens_limit = 1;
  v1::GenerateRequest t = UserAsks("hi");
  t.set_mode(v1::MODE_THINKING);
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(t, limits);
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::StatusOr<TokenBudget> b = ResolveTokenBudget(*plan, 10, limits);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(),
              HasSubstr("thinking mode generates at least 2 tokens; the server's "
                        "--max-tokens-limit is 1"));

  plan = ValidateGenerateRequest(UserAsks("hi"), limits);  // instant mode fits
  ASSERT_TRUE(plan.ok()) << plan.status();
  b = ResolveTokenBudget(*plan, 10, limits);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->max_tokens, 1);
}

v1::ContemplateRequest Question() {
  v1::ContemplateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("What is 6 * 7?");
  return r;
}

TEST(ValidationTest, ContemplateAgentsMustBeWithinMaxAgents) {
  v1::ContemplateRequest r = Question();
  EXPECT_EQ(Error(r), "OK");  // default agents
  r.set_agents(9);
  EXPECT_THAT(Error(r), HasSubstr("agents=9 must be in [1, 8] (the server's --max-agents)"));
  r.set_agents(0);
  EXPECT_THAT(Error(r), HasSubstr("agents=0 must be in [1, 8]"));
  r.set_agents(8);
  EXPECT_EQ(Error(r), "OK");
}

TEST(ValidationTest, ContemplateThinkingBudgetStaysBelowTheDefaultMaxTokens) {
  // Found by contemplate_request_fuzz (fuzz/corpus/contemplate_request_fuzz/
  // seed_thinking_budget_only.pb): without max_tokens the budget was checked
  // against --max-tokens-limit, but the agents get max_tokens 1024, and the
  // orchestrator refused the run after admission.
  RequestLimits limits = Limits();
  limits.max_tokens_limit = 4096;
  v1::ContemplateRequest r = Question();
  r.set_thinking_budget(2000);
  absl::Status s = ValidateContemplateRequest(r, limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("thinking_budget=2000 must be in [1, 1023] (max_tokens - 1; "
                                     "max_tokens is absent, so 1024)"));
  r.set_thinking_budget(1023);
  EXPECT_TRUE(ValidateContemplateRequest(r, limits).ok());
  r.set_max_tokens(3000);
  r.set_thinking_budget(2000);
  EXPECT_TRUE(ValidateContemplateRequest(r, limits).ok());

  // Below the default, the server's limit is what the agents get.
  r = Question();
  r.set_thinking_budget(255);
  EXPECT_THAT(Error(r), HasSubstr("thinking_budget=255 must be in [1, 254]"));
}

TEST(ValidationTest, ContemplateNeedsAMaxTokensLimitOfTwo) {
  RequestLimits limits = Limits();
  limits.max_tokens_limit = 1;
  absl::Status s = ValidateContemplateRequest(Question(), limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("Contemplate agents generate at least 2 tokens; the "
                                     "server's --max-tokens-limit is 1"));
}

TEST(ValidationTest, ContemplateChecksItsOtherFields) {
  v1::ContemplateRequest empty;
  EXPECT_THAT(Error(empty), HasSubstr("messages is empty"));
  auto with = [](auto set) {
    v1::ContemplateRequest r = Question();
    r.set_agents(4);
    set(r);
    return Error(r);
  };
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.set_temperature(-0.5f); }),
              HasSubstr("temperature=-0.5"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.set_temperature_spread(3); }),
              HasSubstr("temperature_spread=3"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.set_aggregator(static_cast<v1::Aggregator>(99)); }),
              HasSubstr("aggregator=99"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.set_answer_format(static_cast<v1::AnswerFormat>(99));
              }),
              HasSubstr("answer_format=99"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.set_max_tokens(10);
                r.set_thinking_budget(10);
              }),
              HasSubstr("thinking_budget=10 must be in [1, 9]"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.mutable_stopping()->mutable_consensus()->set_min_finished(5);
              }),
              HasSubstr("stopping.consensus.min_finished=5 must be in [1, agents=4]"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.mutable_stopping()->mutable_consensus()->set_vote_share(0.5f);
              }),
              HasSubstr("stopping.consensus.vote_share=0.5"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.mutable_stopping()->mutable_confidence()->set_warmup_agents(4);
              }),
              HasSubstr("stopping.confidence.warmup_agents=4 must be in [1, agents - 1 = 3]"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                r.mutable_stopping()->mutable_confidence()->set_window(0);
              }),
              HasSubstr("stopping.confidence.window=0"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.set_confidence_eta(0); }),
              HasSubstr("confidence_eta=0"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.add_stop(""); }),
              HasSubstr("stop[0] is 0 bytes"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) {
                for (int i = 0; i < 17; ++i) r.add_stop("x");
              }),
              HasSubstr("stop has 17 strings"));
  EXPECT_THAT(with([](v1::ContemplateRequest& r) { r.add_roles(std::string(5000, 'x')); }),
              HasSubstr("roles[0] is 5000 bytes"));
}

}  // namespace
}  // namespace conclave::server
