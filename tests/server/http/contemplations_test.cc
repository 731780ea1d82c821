// POST /v1/contemplations bodies -> conclave.v1.ContemplateRequest through
// protobuf's JSON mapping (plus "stream", and "role": "user" as a
// convenience), the field a validation message names, and the folding of a
// run's events into the non-streaming response.
#include "server/http/contemplations.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_response.h"

namespace conclave::server::http {
namespace {

using ::testing::HasSubstr;

TEST(ContemplationsTest, ParsesProtobufsJsonMappingAndTheStreamField) {
  absl::StatusOr<ContemplationRequest> r = ParseContemplationRequest(R"({
      "messages": [{"role": "ROLE_USER", "content": "2+2?"},
                   {"role": "assistant", "content": "4"}],
      "agents": 3, "aggregator": "AGGREGATOR_CONFIDENCE", "answerFormat": 5,
      "seed": "18446744073709551615", "stream": true,
      "stopping": {"consensus": {"enabled": true, "vote_share": 0.8}}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->stream);
  const v1::ContemplateRequest& q = r->request;
  ASSERT_EQ(q.messages_size(), 2);
  EXPECT_EQ(q.messages(0).role(), v1::ROLE_USER);
  EXPECT_EQ(q.messages(1).role(), v1::ROLE_UNSPECIFIED);
  EXPECT_EQ(q.messages(1).role_name(), "assistant");  // "role": "assistant" -> role_name
  EXPECT_EQ(q.agents(), 3);
  EXPECT_EQ(q.aggregator(), v1::AGGREGATOR_CONFIDENCE);
  EXPECT_EQ(q.answer_format(), v1::ANSWER_FORMAT_NUMBER);
  EXPECT_EQ(q.seed(), ~uint64_t{0});
  EXPECT_TRUE(q.stopping().consensus().enabled());
  EXPECT_FLOAT_EQ(q.stopping().consensus().vote_share(), 0.8f);
  EXPECT_FALSE(ParseContemplationRequest(R"({"messages": []})")->stream);
}

TEST(ContemplationsTest, RefusesUnknownFieldsAndValuesProtobufCannotRead) {
  absl::StatusOr<ContemplationRequest> r = ParseContemplationRequest(R"({"agentz": 3})");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParamOf(r.status()), "agentz");
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("unrecognized field agentz"));

  r = ParseContemplationRequest(R"({"agents": "many"})");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("not a valid conclave.v1.ContemplateRequest"));
  EXPECT_EQ(ParseContemplationRequest(R"({"aggregator": "AGGREGATOR_BEST"})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParamOf(ParseContemplationRequest(R"({"stream": "yes"})").status()), "stream");
  EXPECT_EQ(ParseContemplationRequest("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ParseContemplationRequest("{\"x\": \"\xc3\"}").status().message()),
              HasSubstr("not valid UTF-8"));
}

TEST(ContemplationsTest, FindsTheFieldAValidationMessageNames) {
  EXPECT_EQ(ValidationParam("agents=9 must be in [1, 8] (the server's --max-agents)"), "agents");
  EXPECT_EQ(ValidationParam("stopping.consensus.vote_share=0.3 must be in (0.5, 1]"),
            "stopping.consensus.vote_share");
  EXPECT_EQ(ValidationParam("messages[1].role_name \"x\" is not a known role"),
            "messages[1].role_name");
  EXPECT_EQ(ValidationParam("model \"m\" is not served here"), "model");
  EXPECT_EQ(ValidationParam("the prompt encodes to no tokens"), "");
  EXPECT_EQ(ValidationParam("agents"), "");
}

TEST(ContemplationsTest, EventsUseProtoFieldNamesAndPrintDefaults) {
  v1::ContemplateEvent e;
  e.mutable_agent_started()->set_agent(0);
  e.mutable_agent_started()->set_seed(7);
  const nlohmann::ordered_json j = EventJson(e);
  ASSERT_TRUE(j.contains("agent_started"));
  EXPECT_EQ(j["agent_started"]["agent"], 0);
  EXPECT_EQ(j["agent_started"]["role"], "");
  EXPECT_EQ(j["agent_started"]["seed"], "7");  // uint64 as a string, as proto3 JSON says
}

TEST(ContemplationsTest, FoldsTheEventsIntoOneSummary) {
  ContemplationSummary summary;
  v1::ContemplateEvent e;
  for (int agent : {0, 1}) {
    e.Clear();
    e.mutable_agent_started()->set_agent(agent);
    e.mutable_agent_started()->set_temperature(0.5f);
    summary.Add(e);
  }
  e.Clear();
  e.mutable_agent_text()->set_agent(0);
  e.mutable_agent_text()->set_text("4");
  summary.Add(e);
  e.Clear();
  v1::AgentFinished* f = e.mutable_agent_finished();
  f->set_agent(0);
  f->set_answer("4");
  f->set_has_answer(true);
  f->set_tokens(12);
  f->set_finish_reason(v1::FINISH_REASON_STOP);
  summary.Add(e);
  e.Clear();
  e.mutable_agent_stopped()->set_agent(1);
  e.mutable_agent_stopped()->set_reason(v1::AgentStopped::REASON_CONSENSUS);
  e.mutable_agent_stopped()->set_tokens(5);
  summary.Add(e);
  e.Clear();
  v1::VerifierScores::Score* s = e.mutable_verifier_scores()->add_scores();
  s->set_agent(0);
  s->set_p_yes(0.9f);
  summary.Add(e);

  v1::ContemplateEvent final_event;
  final_event.mutable_final_answer()->set_answer("4");
  final_event.mutable_final_answer()->set_support(1.0f);
  final_event.mutable_final_answer()->set_request_id("12");
  const nlohmann::ordered_json j =
      summary.ToJson({"contemplation-12", 1700000000, "tiny"}, final_event);
  EXPECT_EQ(j["id"], "contemplation-12");
  EXPECT_EQ(j["object"], "contemplation");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["final_answer"]["answer"], "4");
  EXPECT_EQ(j["final_answer"]["request_id"], "12");
  ASSERT_EQ(j["agents"].size(), 2u);
  EXPECT_EQ(j["agents"][0]["status"], "finished");
  EXPECT_EQ(j["agents"][0]["answer"], "4");
  EXPECT_EQ(j["agents"][0]["tokens"], 12);
  EXPECT_EQ(j["agents"][0]["finish_reason"], "FINISH_REASON_STOP");
  EXPECT_EQ(j["agents"][0]["text"], "4");
  EXPECT_EQ(j["agents"][1]["status"], "stopped");
  EXPECT_EQ(j["agents"][1]["stop_reason"], "REASON_CONSENSUS");
  EXPECT_EQ(j["agents"][1]["tokens"], 5);
  EXPECT_FALSE(j["agents"][1].contains("text"));
  ASSERT_EQ(j["verifier_scores"].size(), 1u);
  EXPECT_FLOAT_EQ(j["verifier_scores"][0]["p_yes"].get<float>(), 0.9f);
}

}  // namespace
}  // namespace conclave::server::http
