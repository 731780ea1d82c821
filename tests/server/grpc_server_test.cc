// The gRPC server in-process on 127.0.0.1 (a free port) with the real
// SmolLM2 model, called through the generated C++ stub: streaming, thinking
// segments, validation errors, cancellation and deadlines reaching the
// engine (no KV block leaked), ListModels and the health service. Skips when
// the model has not been fetched.
#include "server/grpc_server.h"

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "conclave/v1/conclave.grpc.pb.h"
#include "engine/tokenizer/chat_template.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/serving_engine.h"
#include "tests/server/test_serving_engine.h"
#include "tests/testing/paths.h"

namespace conclave::server {
namespace {

using ::testing::HasSubstr;

constexpr int kMaxAgents = 4;
constexpr int kMaxPromptTokens = 512;
// A raw prompt the model continues for as long as it may (counting), so a
// request is still running when the test cancels it.
constexpr char kEndlessPrompt[] = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,";

struct Collected {
  grpc::Status status;
  std::vector<v1::GenerateDelta> deltas;
  std::string thinking;
  std::string answer;
  std::vector<int32_t> token_ids;
  bool has_final = false;
  v1::GenerateFinal final_message;
};

class GrpcServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = conclave::testing::DefaultModelPath();
    if (path.empty()) return;
    absl::StatusOr<std::unique_ptr<ServingEngine>> serving = LoadTestServingEngine(path, kMaxAgents);
    ASSERT_TRUE(serving.ok()) << serving.status();
    serving_ = serving->release();

    ServerOptions options;
    options.port = 0;
    options.max_agents = kMaxAgents;
    options.max_prompt_tokens = kMaxPromptTokens;
    absl::StatusOr<std::unique_ptr<GrpcServer>> server =
        GrpcServer::Start(serving_->client(), serving_->info(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    delete channel_;
    channel_ = nullptr;
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
    delete server_;
    server_ = nullptr;
    delete serving_;
    serving_ = nullptr;
  }
  void SetUp() override {
    if (serving_ == nullptr) GTEST_SKIP() << "SmolLM2 model not fetched";
    stub_ = v1::Conclave::NewStub(*channel_);
  }

  static v1::GenerateRequest Ask(const std::string& question, int max_tokens) {
    v1::GenerateRequest r;
    v1::ChatMessage* m = r.add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content(question);
    r.set_max_tokens(max_tokens);
    r.mutable_sampling()->set_temperature(0);
    return r;
  }

  static v1::GenerateRequest Endless(int max_tokens) {
    v1::GenerateRequest r;
    r.set_prompt(kEndlessPrompt);
    r.set_max_tokens(max_tokens);
    r.mutable_sampling()->set_temperature(0);
    return r;
  }

  // Calls Generate and reads the whole stream.
  Collected Generate(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    return Read(context, request);
  }

  Collected Read(grpc::ClientContext& context, const v1::GenerateRequest& request) {
    Collected c;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      EXPECT_FALSE(c.has_final) << "a message after the final one";
      if (response.has_delta()) {
        const v1::GenerateDelta& d = response.delta();
        c.deltas.push_back(d);
        (d.segment() == v1::SEGMENT_THINKING ? c.thinking : c.answer) += d.text();
        c.token_ids.insert(c.token_ids.end(), d.token_ids().begin(), d.token_ids().end());
      } else if (response.has_final()) {
        c.has_final = true;
        c.final_message = response.final();
      }
    }
    c.status = reader->Finish();
    return c;
  }

  // Waits (bounded) until the engine has no request left, then checks that
  // every KV block is back: none in use, none leaked.
  static void ExpectEngineIdleWithNoBlocksInUse() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    engine::EngineStats stats = serving_->engine().stats();
    while (stats.active_requests > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      stats = serving_->engine().stats();
    }
    EXPECT_EQ(stats.active_requests, 0);
    EXPECT_EQ(stats.leaked_blocks, 0);
    EXPECT_EQ(stats.kv.used_blocks, 0);
  }

  static ServingEngine* serving_;
  static GrpcServer* server_;
  static std::shared_ptr<grpc::Channel>* channel_;
  std::unique_ptr<v1::Conclave::Stub> stub_;
};

ServingEngine* GrpcServerTest::serving_ = nullptr;
GrpcServer* GrpcServerTest::server_ = nullptr;
std::shared_ptr<grpc::Channel>* GrpcServerTest::channel_ = nullptr;

TEST_F(GrpcServerTest, InstantGreedyTextIsWhatTheEngineGeneratesForTheChatPrompt) {
  const std::string question = "Name three colors.";
  const Collected c = Generate(Ask(question, 24));
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_TRUE(c.has_final);
  for (const v1::GenerateDelta& d : c.deltas) EXPECT_EQ(d.segment(), v1::SEGMENT_ANSWER);

  // The same prompt straight into the engine.
  const orchestrator::EngineClient& client = serving_->client();
  absl::StatusOr<std::string> rendered =
      engine::ApplyChatTemplate(client.chat_format(), {{"user", question}}, true);
  ASSERT_TRUE(rendered.ok());
  engine::EngineRequest request;
  request.prompt = client.tokenizer().Encode(*rendered, false, true);
  request.sampling = {engine::SamplingParams{}};  // temperature 0: greedy
  request.max_tokens = 24;
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> stream =
      serving_->engine().Submit(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<int32_t> ids;
  std::string text;
  engine::FinishReason finish = engine::FinishReason::kNone;
  engine::RequestUpdate update;
  while ((*stream)->Next(update) == engine::RequestStream::Poll::kUpdate) {
    for (const engine::SequenceDelta& d : update.deltas) {
      for (const engine::TokenOutput& t : d.tokens) ids.push_back(t.id);
      text += d.text;
      if (d.finish != engine::FinishReason::kNone) finish = d.finish;
    }
    if (update.done) break;
  }

  EXPECT_EQ(c.token_ids, ids);
  EXPECT_EQ(c.answer, text);
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(c.final_message.usage().prompt_tokens(), static_cast<int>(request.prompt.size()));
  EXPECT_EQ(c.final_message.usage().generated_tokens(), static_cast<int>(ids.size()));
  EXPECT_EQ(c.final_message.finish_reason(), finish == engine::FinishReason::kLength
                                                 ? v1::FINISH_REASON_LENGTH
                                                 : v1::FINISH_REASON_STOP);
  EXPECT_EQ(c.final_message.model(), "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_FALSE(c.final_message.request_id().empty());
  EXPECT_GT(c.final_message.timing().total_seconds(), 0);
  EXPECT_GT(c.final_message.timing().time_to_first_token_seconds(), 0);
}

TEST_F(GrpcServerTest, LogprobsComeWithEveryToken) {
  v1::GenerateRequest r = Ask("Say hello.", 4);
  r.mutable_sampling()->set_logprobs(3);
  const Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  for (const v1::GenerateDelta& d : c.deltas) {
    ASSERT_EQ(d.logprobs_size(), d.token_ids_size());
    for (int i = 0; i < d.logprobs_size(); ++i) {
      EXPECT_EQ(d.logprobs(i).token_id(), d.token_ids(i));
      EXPECT_LE(d.logprobs(i).logprob(), 0.0f);
      ASSERT_EQ(d.logprobs(i).top_size(), 3);
      // Greedy: the chosen token is the most likely one.
      EXPECT_EQ(d.logprobs(i).top(0).token_id(), d.token_ids(i));
    }
  }
}

TEST_F(GrpcServerTest, ThinkingStreamsTheThinkingThenTheAnswer) {
  v1::GenerateRequest r = Ask("What is 17 + 25?", 48);
  r.set_mode(v1::MODE_THINKING);
  r.set_thinking_budget(16);
  const Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_FALSE(c.deltas.empty());
  EXPECT_EQ(c.deltas.front().segment(), v1::SEGMENT_THINKING);
  bool answering = false;
  for (const v1::GenerateDelta& d : c.deltas) {
    if (d.segment() == v1::SEGMENT_ANSWER) answering = true;
    if (answering) {
      EXPECT_EQ(d.segment(), v1::SEGMENT_ANSWER) << "thinking after the answer";
    }
  }
  EXPECT_TRUE(answering) << "no answer segment";
  EXPECT_FALSE(c.thinking.empty());
  ASSERT_TRUE(c.has_final);
  const v1::Usage& usage = c.final_message.usage();
  EXPECT_GE(usage.thinking_tokens(), 1);
  EXPECT_LE(usage.thinking_tokens(), 16);
  EXPECT_GT(usage.generated_tokens(), usage.thinking_tokens());
  EXPECT_LE(usage.generated_tokens(), 48);
  // The answer's prompt repeats the thinking prompt: its full blocks are cached.
  EXPECT_GT(usage.cached_prompt_tokens(), 0);
  EXPECT_NE(c.final_message.thinking_end(), v1::THINKING_END_UNSPECIFIED);
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, InvalidRequestsAreRejectedNamingTheField) {
  struct Case {
    std::string name;
    v1::GenerateRequest request;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"no messages", v1::GenerateRequest(), "messages is empty"});
  {
    v1::GenerateRequest r = Ask("hi", 4);
    r.mutable_messages(0)->set_role(v1::ROLE_UNSPECIFIED);
    r.mutable_messages(0)->set_role_name("wizard");
    cases.push_back({"unknown role", r, "messages[0].role_name \"wizard\""});
  }
  {
    v1::GenerateRequest r = Ask("hi", 4);
    r.mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r, "sampling.temperature=-1"});
  }
  {
    v1::GenerateRequest r = Ask("hi", 4);
    r.mutable_sampling()->set_top_p(0);
    cases.push_back({"top_p 0", r, "sampling.top_p=0 must be in (0, 1]"});
  }
  {
    v1::GenerateRequest r = Ask("hi", 4);
    r.mutable_sampling()->set_logprobs(21);
    cases.push_back({"logprobs 21", r, "sampling.logprobs=21 must be in [0, 20]"});
  }
  {
    v1::GenerateRequest r = Ask("hi", 4);
    r.set_model("no-such-model");
    cases.push_back({"unknown model", r, "model \"no-such-model\" is not served"});
  }
  {
    std::string long_question;
    for (int i = 0; i < 600; ++i) long_question += "word ";
    cases.push_back({"prompt too long", Ask(long_question, 4),
                     absl::StrCat("max_prompt_tokens=", kMaxPromptTokens)});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Collected got = Generate(c.request);
    EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(got.status.error_message(), HasSubstr(c.field));
    EXPECT_TRUE(got.deltas.empty());
  }
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, ContentThatIsNotUtf8NeverReachesTheEngine) {
  // proto3 strings must be UTF-8: the server's protobuf parser refuses the
  // message before any handler runs.
  const Collected got = Generate(Ask("caf\xC3", 4));
  EXPECT_FALSE(got.status.ok());
  EXPECT_TRUE(got.deltas.empty());
}

// One Contemplate call read to its end: every event, in order.
struct ContemplateCall {
  std::vector<v1::ContemplateEvent> events;
  grpc::Status status;
  int count(v1::ContemplateEvent::EventCase c) const {
    int n = 0;
    for (const v1::ContemplateEvent& e : events) n += e.event_case() == c;
    return n;
  }
};

v1::ContemplateRequest Contemplation(int agents, v1::Aggregator aggregator) {
  v1::ContemplateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("Sam has 3 apples and buys 4 more. How many apples does Sam have?");
  r.set_agents(agents);
  r.set_aggregator(aggregator);
  r.set_answer_format(v1::ANSWER_FORMAT_NUMBER);
  r.set_max_tokens(64);
  r.set_seed(11);
  return r;
}

ContemplateCall Contemplate(v1::Conclave::Stub& stub, const v1::ContemplateRequest& request,
                            std::chrono::milliseconds deadline = std::chrono::seconds(180),
                            int cancel_after_events = -1) {
  ContemplateCall c;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  std::unique_ptr<grpc::ClientReader<v1::ContemplateEvent>> reader =
      stub.Contemplate(&context, request);
  v1::ContemplateEvent event;
  while (reader->Read(&event)) {
    c.events.push_back(event);
    if (static_cast<int>(c.events.size()) == cancel_after_events) context.TryCancel();
  }
  c.status = reader->Finish();
  return c;
}

TEST_F(GrpcServerTest, ContemplateRejectsTooManyAgentsNamingTheLimit) {
  const ContemplateCall c =
      Contemplate(*stub_, Contemplation(kMaxAgents + 1, v1::AGGREGATOR_MAJORITY));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(c.status.error_message(), HasSubstr(absl::StrCat("agents=", kMaxAgents + 1)));
  EXPECT_TRUE(c.events.empty());
}

TEST_F(GrpcServerTest, ContemplateRejectsAPromptOverTheLimitBeforeAnyAgentStarts) {
  v1::ContemplateRequest r = Contemplation(2, v1::AGGREGATOR_MAJORITY);
  std::string long_question;
  for (int i = 0; i < 600; ++i) long_question += "word ";
  r.mutable_messages(0)->set_content(long_question);
  const ContemplateCall c = Contemplate(*stub_, r);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(c.status.error_message(), HasSubstr(absl::StrCat("max_prompt_tokens=", kMaxPromptTokens)));
  EXPECT_TRUE(c.events.empty());
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, ContemplateStreamsAgentsThenOneFinalAnswerForEveryAggregator) {
  for (v1::Aggregator aggregator : {v1::AGGREGATOR_MAJORITY, v1::AGGREGATOR_CONFIDENCE,
                                    v1::AGGREGATOR_VERIFIER, v1::AGGREGATOR_SYNTHESIS}) {
    const ContemplateCall c = Contemplate(*stub_, Contemplation(3, aggregator));
    ASSERT_TRUE(c.status.ok()) << v1::Aggregator_Name(aggregator) << ": "
                               << c.status.error_message();
    EXPECT_EQ(c.count(v1::ContemplateEvent::kAgentStarted), 3);
    EXPECT_EQ(c.count(v1::ContemplateEvent::kAgentFinished), 3);
    EXPECT_EQ(c.count(v1::ContemplateEvent::kFinalAnswer), 1);
    ASSERT_TRUE(c.events.back().has_final_answer());
    const v1::FinalAnswer& f = c.events.back().final_answer();
    int answered = 0, agent_tokens = 0;
    for (const v1::ContemplateEvent& e : c.events) {
      if (!e.has_agent_finished()) continue;
      answered += e.agent_finished().has_answer();
      agent_tokens += e.agent_finished().tokens();
    }
    EXPECT_EQ(f.usage().agent_tokens(), agent_tokens);
    EXPECT_EQ(f.usage().generated_tokens(), f.usage().agent_tokens() + f.usage().aggregator_tokens());
    EXPECT_EQ(f.seed(), 11u);
    if (aggregator == v1::AGGREGATOR_SYNTHESIS || answered == 0) {
      EXPECT_EQ(f.aggregator(), v1::AGGREGATOR_SYNTHESIS);
      EXPECT_FALSE(f.text().empty());
    } else {
      EXPECT_EQ(f.aggregator(), aggregator);
      EXPECT_FALSE(f.normalized_answer().empty());
      ASSERT_GT(f.votes_size(), 0);
      EXPECT_EQ(f.votes(0).answer(), f.normalized_answer());
    }
    EXPECT_EQ(c.count(v1::ContemplateEvent::kVerifierScores),
              aggregator == v1::AGGREGATOR_VERIFIER && answered > 0 ? 1 : 0);
    ExpectEngineIdleWithNoBlocksInUse();
  }
}

TEST_F(GrpcServerTest, ContemplateConsensusStopsAgentsAndReportsWhy) {
  v1::ContemplateRequest r = Contemplation(4, v1::AGGREGATOR_MAJORITY);
  r.set_max_tokens(200);
  r.mutable_stopping()->mutable_consensus()->set_enabled(true);
  r.mutable_stopping()->mutable_consensus()->set_min_finished(1);
  r.mutable_stopping()->mutable_consensus()->set_vote_share(1.0f);
  const ContemplateCall c = Contemplate(*stub_, r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  const int finished = c.count(v1::ContemplateEvent::kAgentFinished);
  const int stopped = c.count(v1::ContemplateEvent::kAgentStopped);
  EXPECT_EQ(finished + stopped, 4);
  for (const v1::ContemplateEvent& e : c.events) {
    if (e.has_agent_stopped()) {
      EXPECT_EQ(e.agent_stopped().reason(), v1::AgentStopped::REASON_CONSENSUS);
    }
  }
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, CancellingAContemplationAbortsEveryAgent) {
  v1::ContemplateRequest r = Contemplation(4, v1::AGGREGATOR_MAJORITY);
  r.set_max_tokens(1500);
  r.set_stream_agent_text(true);
  // Cancelled after the started events and some text.
  const ContemplateCall c = Contemplate(*stub_, r, std::chrono::seconds(180), 6);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::CANCELLED);
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, AContemplationPastItsDeadlineEndsWithDeadlineExceeded) {
  v1::ContemplateRequest r = Contemplation(4, v1::AGGREGATOR_MAJORITY);
  r.set_max_tokens(1500);
  const ContemplateCall c = Contemplate(*stub_, r, std::chrono::milliseconds(400));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(c.count(v1::ContemplateEvent::kFinalAnswer), 0);
  ExpectEngineIdleWithNoBlocksInUse();
}

TEST_F(GrpcServerTest, CancellingMidStreamAbortsTheEngineRequest) {
  const int64_t generated_before = serving_->engine().stats().generated_tokens;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub_->Generate(&context, Endless(2000));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_TRUE(response.has_delta());
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectEngineIdleWithNoBlocksInUse();
  // Stopped long before max_tokens.
  EXPECT_LT(serving_->engine().stats().generated_tokens - generated_before, 1000);
}

TEST_F(GrpcServerTest, DeadlineExceededAbortsTheEngineRequest) {
  const int64_t generated_before = serving_->engine().stats().generated_tokens;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  const Collected c = Read(context, Endless(2000));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(c.has_final);
  ExpectEngineIdleWithNoBlocksInUse();
  EXPECT_LT(serving_->engine().stats().generated_tokens - generated_before, 1000);
}

TEST_F(GrpcServerTest, ListModelsDescribesTheServedModel) {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(stub_->ListModels(&context, v1::ListModelsRequest(), &response).ok());
  ASSERT_EQ(response.models_size(), 1);
  const v1::ModelInfo& m = response.models(0);
  EXPECT_EQ(m.id(), "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_EQ(m.architecture(), "llama");
  EXPECT_EQ(m.context_length(), 8192);
  EXPECT_EQ(m.max_agents(), kMaxAgents);
  EXPECT_EQ(m.chat_format(), "chatml-smollm");
  EXPECT_EQ(m.quantization(), "Q4_1");
  EXPECT_FALSE(m.display_name().empty());
}

TEST_F(GrpcServerTest, HealthCheckSaysServing) {
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest (the whole
  // server); the reply is HealthCheckResponse{status: SERVING = 1}, i.e. the
  // bytes 08 01. Called generically: the test needs no health stubs.
  grpc::GenericStub stub(*channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status s) { done.set_value(s); });
  const grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace conclave::server
