// Contemplating mode end to end on the default model (SmolLM2-135M) and the
// real batched engine: agents share their prompt, policies stop agents and
// free their blocks, every aggregator produces a final answer, cancellation
// ends the run, and nothing is left in the engine afterwards. Skips when the
// model has not been fetched.
#include "orchestrator/contemplation.h"

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/model/model.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "orchestrator/plan/prompts.h"
#include "tests/testing/paths.h"

namespace conclave::orchestrator {
namespace {

using Kind = ContemplateEvent::Kind;

class ContemplationTest : public ::testing::Test {
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
    backend_ = std::make_unique<kernels::cpu::CpuBackend>(2);
    ASSERT_TRUE(backend_->LoadModel(model_->config(), model_->weights()).ok());
    engine::EngineConfig config;
    config.num_kv_blocks = 512;
    config.check_invariants = true;
    absl::StatusOr<std::unique_ptr<engine::Engine>> e =
        engine::Engine::Create(*backend_, model_->config(), model_->tokenizer(), config);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    absl::StatusOr<engine::ChatFormat> format = engine::DetectChatFormat(model_->file());
    ASSERT_TRUE(format.ok());
    client_ = std::make_unique<LocalEngineClient>(*engine_, model_->tokenizer(), *format,
                                                  model_->config().context_length, "smollm2");
  }

  // After a run every request has ended: no sequence, no used block other
  // than the prefix cache's.
  void ExpectEngineIdle() {
    engine::EngineStats s;
    for (int i = 0; i < 200; ++i) {
      s = engine_->stats();
      if (s.active_requests == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(s.active_requests, 0);
    EXPECT_EQ(s.running_sequences, 0);
    EXPECT_EQ(s.leaked_blocks, 0);
    EXPECT_EQ(s.kv.used_blocks, 0);
  }

  static ContemplateOptions Question(int agents) {
    ContemplateOptions o;
    o.messages = {{"user", "Tom has 3 apples and buys 4 more. How many apples does he have?"}};
    o.agents = agents;
    o.temperature = 0.8f;
    o.seed = 7;
    o.max_tokens = 96;
    o.answer_format = AnswerFormat::kAuto;
    return o;
  }

  struct Run {
    absl::StatusOr<ContemplateResult> result;
    std::vector<ContemplateEvent> events;
    int count(Kind k) const {
      int n = 0;
      for (const ContemplateEvent& e : events) n += e.kind == k;
      return n;
    }
  };

  Run Contemplate(const ContemplateOptions& o) {
    Run run;
    Contemplation c(*client_);
    run.result = c.Run(o, [&](const ContemplateEvent& e) { run.events.push_back(e); });
    return run;
  }

  static engine::Model* model_;
  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<LocalEngineClient> client_;
};

engine::Model* ContemplationTest::model_ = nullptr;

TEST_F(ContemplationTest, AgentsShareOnePrefillAndTheMajorityWins) {
  const ContemplateOptions o = Question(4);
  const Run run = Contemplate(o);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  const ContemplateResult& r = *run.result;
  EXPECT_EQ(run.count(Kind::kAgentStarted), 4);
  EXPECT_EQ(run.count(Kind::kAgentFinished), 4);
  EXPECT_EQ(run.count(Kind::kAgentStopped), 0);
  // Started events come first, with distinct seeds.
  std::set<uint64_t> seeds;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(run.events[i].kind, Kind::kAgentStarted);
    seeds.insert(run.events[i].seed);
  }
  EXPECT_EQ(seeds.size(), 4u);
  EXPECT_EQ(r.aggregator, AggregatorKind::kMajority);
  ASSERT_EQ(r.agents.size(), 4u);
  // The tally counts exactly the agents with an answer, and the winner has
  // the most votes.
  int answered = 0, tallied = 0, generated = 0;
  for (const AgentOutcome& a : r.agents) {
    answered += a.answer.found;
    generated += a.tokens;
    EXPECT_TRUE(a.finished);
    EXPECT_GT(a.tokens, 0);
  }
  for (const VoteTally& t : r.votes) tallied += t.votes;
  EXPECT_EQ(tallied, answered);
  if (answered > 0) {
    ASSERT_TRUE(r.has_answer);
    EXPECT_EQ(r.votes[0].answer, r.normalized);
    EXPECT_NEAR(r.support, static_cast<double>(r.votes[0].votes) / answered, 1e-9);
  }
  // One prompt, prefilled once for four agents.
  const absl::StatusOr<std::vector<int32_t>> prompt_ids = ChatPromptIds(
      *client_, AgentMessages(o.messages, AgentSpec{}, o.answer_format));
  ASSERT_TRUE(prompt_ids.ok());
  EXPECT_EQ(r.usage.prompt_tokens, static_cast<int>(prompt_ids->size()));
  EXPECT_EQ(r.usage.agent_tokens, generated);
  EXPECT_EQ(r.usage.aggregator_tokens, 0);
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, SameSeedSameAnswers) {
  const Run a = Contemplate(Question(3));
  const Run b = Contemplate(Question(3));
  ASSERT_TRUE(a.result.ok() && b.result.ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.result->agents[i].text, b.result->agents[i].text);
}

TEST_F(ContemplationTest, ConsensusStopAbortsTheRestAndFreesTheirBlocks) {
  ContemplateOptions o = Question(6);
  o.max_tokens = 160;
  // Any single finished agent with an answer is a consensus of one.
  o.consensus = ConsensusStopOptions{1, 0.5};
  const Run run = Contemplate(o);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  const ContemplateResult& r = *run.result;
  int finished = 0, stopped = 0;
  for (const AgentOutcome& a : r.agents) {
    finished += a.finished;
    if (a.stopped) {
      ++stopped;
      EXPECT_EQ(*a.stopped, StopReason::kConsensus);
    }
  }
  EXPECT_EQ(finished + stopped, 6);
  EXPECT_EQ(run.count(Kind::kAgentStopped), stopped);
  // Stopping is one decision: once the first agent is stopped, no agent
  // finishes any more.
  bool seen_stop = false;
  for (const ContemplateEvent& e : run.events) {
    seen_stop = seen_stop || e.kind == Kind::kAgentStopped;
    if (seen_stop) {
      EXPECT_NE(e.kind, Kind::kAgentFinished) << "agent " << e.agent;
    }
  }
  // Once the first agent with an answer finished, every agent still running
  // was stopped: so at most the agents that ended in the same engine step
  // as it, or before it without an answer, finished.
  bool any_answer = false;
  for (const AgentOutcome& a : r.agents) any_answer = any_answer || (a.finished && a.answer.found);
  if (any_answer) {
    EXPECT_TRUE(r.has_answer);
  }
  if (any_answer && stopped == 0) {
    // Only possible when every agent finished in one step.
    std::set<int> lengths;
    for (const AgentOutcome& a : r.agents) lengths.insert(a.tokens);
    EXPECT_EQ(lengths.size(), 1u);
  }
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, ConfidenceVoteVerifierAndSynthesisEachGiveAFinalAnswer) {
  for (AggregatorKind kind :
       {AggregatorKind::kConfidence, AggregatorKind::kVerifier, AggregatorKind::kSynthesis}) {
    ContemplateOptions o = Question(3);
    o.aggregator = kind;
    o.aggregator_max_tokens = 64;
    const absl::Time start = absl::Now();
    const Run run = Contemplate(o);
    const absl::Duration wall = absl::Now() - start;
    ASSERT_TRUE(run.result.ok()) << AggregatorName(kind) << ": " << run.result.status();
    const ContemplateResult& r = *run.result;
    EXPECT_LE(r.usage.queue_time, wall);
    EXPECT_LE(r.aggregation_time, wall);
    if (r.aggregator == AggregatorKind::kVerifier || r.aggregator == AggregatorKind::kSynthesis) {
      EXPECT_GT(r.aggregation_time, absl::ZeroDuration());  // an engine pass ran
    }
    bool any_answer = false;
    for (const AgentOutcome& a : r.agents) any_answer = any_answer || a.answer.found;
    if (kind == AggregatorKind::kSynthesis || !any_answer) {
      EXPECT_EQ(r.aggregator, AggregatorKind::kSynthesis);
      EXPECT_FALSE(r.text.empty());
      EXPECT_GT(r.usage.aggregator_tokens, 0);
    } else if (kind == AggregatorKind::kVerifier) {
      EXPECT_EQ(r.aggregator, AggregatorKind::kVerifier);
      ASSERT_EQ(run.count(Kind::kVerifierScores), 1);
      int answered = 0;
      for (const AgentOutcome& a : r.agents) answered += a.answer.found;
      for (const ContemplateEvent& e : run.events) {
        if (e.kind != Kind::kVerifierScores) continue;
        EXPECT_EQ(static_cast<int>(e.scores.size()), answered);
        for (const auto& [agent, p] : e.scores) {
          EXPECT_GE(p, 0.0);
          EXPECT_LE(p, 1.0);
          EXPECT_TRUE(r.agents[agent].answer.found);
        }
      }
      EXPECT_TRUE(r.has_answer);
      EXPECT_EQ(r.usage.aggregator_tokens, answered);  // one judged token per answer
    } else {
      EXPECT_EQ(r.aggregator, AggregatorKind::kConfidence);
      EXPECT_TRUE(r.has_answer);
    }
    ExpectEngineIdle();
  }
}

TEST_F(ContemplationTest, RolesGiveSeparateRequestsThatShareThePrefix) {
  ContemplateOptions o = Question(4);
  o.roles = {"step_by_step", "work_backwards"};
  o.max_tokens = 32;
  const Run run = Contemplate(o);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  EXPECT_FALSE(run.events[0].role.empty());
  EXPECT_NE(run.events[0].role, run.events[1].role);
  EXPECT_EQ(run.events[0].role, run.events[2].role);
  // Two prompts that differ only after the question: the second request
  // finds the first one's full blocks in the prefix cache.
  EXPECT_GT(run.result->usage.cached_prompt_tokens, 0);
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, AThinkingBudgetForcesAnAnswer) {
  ContemplateOptions o = Question(2);
  o.answer_format = AnswerFormat::kGsm8k;
  o.max_tokens = 64;
  o.thinking_budget = 8;  // far too few to reason: every agent is asked for its answer
  const Run run = Contemplate(o);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  for (const AgentOutcome& a : run.result->agents) {
    if (a.tokens <= 8) continue;  // it ended by itself within the budget
    EXPECT_TRUE(a.forced_answer);
    EXPECT_NE(a.text.find("####"), std::string::npos);
    EXPECT_LE(a.tokens, 8 + 48);
  }
  ExpectEngineIdle();
}

// Passes every request to the engine and keeps a copy of it.
class RecordingClient : public EngineClient {
 public:
  explicit RecordingClient(EngineClient& inner) : inner_(inner) {}
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(
      engine::EngineRequest request) override {
    submitted.push_back(request);
    return inner_.Submit(std::move(request));
  }
  void AbortSequence(int64_t request_id, int index) override {
    inner_.AbortSequence(request_id, index);
  }
  const engine::Tokenizer& tokenizer() const override { return inner_.tokenizer(); }
  engine::ChatFormat chat_format() const override { return inner_.chat_format(); }
  int context_length() const override { return inner_.context_length(); }
  int max_sequences_per_request() const override { return inner_.max_sequences_per_request(); }
  const std::string& model_name() const override { return inner_.model_name(); }

  std::vector<engine::EngineRequest> submitted;

 private:
  EngineClient& inner_;
};

TEST_F(ContemplationTest, OnlyTheFirstRequestOfARunIsNewWorkForTheEngineQueue) {
  ContemplateOptions o = Question(4);
  o.roles = {"step_by_step", "work_backwards"};  // two agent requests
  o.answer_format = AnswerFormat::kGsm8k;
  o.max_tokens = 48;
  o.thinking_budget = 6;  // forced answers
  o.aggregator = AggregatorKind::kVerifier;  // aggregator passes
  RecordingClient recording(*client_);
  Contemplation c(recording);
  const absl::StatusOr<ContemplateResult> r = c.Run(o, [](const ContemplateEvent&) {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_GE(recording.submitted.size(), 3u);
  EXPECT_FALSE(recording.submitted[0].continuation);
  for (size_t i = 1; i < recording.submitted.size(); ++i) {
    EXPECT_TRUE(recording.submitted[i].continuation) << "request " << i;
  }
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, CancelEndsTheRunAndFreesEverything) {
  ContemplateOptions o = Question(4);
  o.max_tokens = 400;
  Contemplation c(*client_);
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    c.Cancel();
  });
  const absl::StatusOr<ContemplateResult> r = c.Run(o, [](const ContemplateEvent&) {});
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, StopStringsEndEachAgentsTextAndItsAnswerIsReadBeforeThem) {
  // The same seeds with and without a stop string: each agent's stopped text
  // is its free text up to the first stop string.
  const Run free_run = Contemplate(Question(3));
  ContemplateOptions o = Question(3);
  o.stop = {"\n"};
  const Run stopped_run = Contemplate(o);
  ASSERT_TRUE(free_run.result.ok() && stopped_run.result.ok());
  int cut = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string& free_text = free_run.result->agents[i].text;
    const AgentOutcome& a = stopped_run.result->agents[i];
    const size_t newline = free_text.find('\n');
    if (newline == std::string::npos) {
      EXPECT_EQ(a.text, free_text) << "agent " << i;
      continue;
    }
    ++cut;
    EXPECT_EQ(a.text, free_text.substr(0, newline)) << "agent " << i;
    EXPECT_EQ(a.finish, engine::FinishReason::kStopString) << "agent " << i;
    EXPECT_EQ(a.answer.found, ExtractAnswer(a.text, o.answer_format).found);
  }
  EXPECT_GT(cut, 0) << "no agent wrote a newline: the test checks nothing";
  ExpectEngineIdle();
}

TEST_F(ContemplationTest, InvalidOptionsAreRejectedBeforeAnythingRuns) {
  ContemplateOptions o = Question(0);
  EXPECT_EQ(Contemplate(o).result.status().code(), absl::StatusCode::kInvalidArgument);
  o = Question(client_->max_sequences_per_request() + 1);
  const Run too_many = Contemplate(o);
  EXPECT_EQ(too_many.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.result.status().message().find("agents="), std::string::npos);
  o = Question(2);
  o.messages.clear();
  EXPECT_EQ(Contemplate(o).result.status().code(), absl::StatusCode::kInvalidArgument);
  o = Question(2);
  o.thinking_budget = o.max_tokens;
  EXPECT_EQ(Contemplate(o).result.status().code(), absl::StatusCode::kInvalidArgument);
  o = Question(2);
  o.stop = {""};
  const Run empty_stop = Contemplate(o);
  EXPECT_EQ(empty_stop.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty_stop.result.status().message().find("stop[0]"), std::string::npos);
  EXPECT_EQ(engine_->stats().steps, 0);
}

}  // namespace
}  // namespace conclave::orchestrator
