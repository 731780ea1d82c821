// POST /v1/contemplations <-> conclave.v1.Contemplate: the body is
// protobuf's JSON mapping of conclave.v1.ContemplateRequest (field names as
// in conclave.proto or in lowerCamelCase, enums by name or number, 64-bit
// integers as numbers or strings) plus one HTTP-only field, "stream"; the
// events go back in the same mapping (proto field names, every field
// printed), one server-sent event each when streaming, or folded into one
// response object otherwise. As a convenience a message's "role" may be
// "system", "user" or "assistant" (it becomes role_name). Validation is
// the gRPC API's (ValidateContemplateRequest), run by the handler through
// ContemplateJob. Pure functions, no transport.
// Thread-safe: pure functions; a ContemplationSummary is one call's.
#ifndef CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_H_
#define CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "conclave/v1/conclave.pb.h"
#include "nlohmann/json.hpp"

namespace conclave::server::http {

struct ContemplationRequest {
  v1::ContemplateRequest request;
  bool stream = false;  // the body's "stream": events as server-sent events
};

// Parses `body`. INVALID_ARGUMENT (http_response.h payloads name the field
// when one is at fault): not UTF-8, not a JSON object, too deep, "stream"
// not a boolean, an unknown field, or a value protobuf's JSON parser
// refuses (a string for agents, an unknown enum name, ...). Field values
// are validated later (ValidateContemplateRequest).
absl::StatusOr<ContemplationRequest> ParseContemplationRequest(absl::string_view body);

// The field a ValidateContemplateRequest (or ValidateModel) message names:
// its leading "agents", "stopping.consensus.vote_share", "messages[1].role",
// or "" when it names none.
std::string ValidationParam(absl::string_view message);

// An event in protobuf's JSON mapping: {"agent_started": {...}},
// {"final_answer": {...}}, ... (proto field names, defaults printed).
nlohmann::ordered_json EventJson(const v1::ContemplateEvent& event);

// The fields of the non-streaming response object that come from the call.
struct ContemplationMeta {
  std::string id;  // "contemplation-<request id>"
  int64_t created = 0;
  std::string model;
};

// Folds a run's events into the non-streaming response:
//   {"id", "object": "contemplation", "created", "model",
//    "final_answer": {FinalAnswer: answer, votes, support, confidence,
//                     aggregator, usage, wall_seconds, seed, request_id},
//    "agents": [{agent, role, temperature, seed, status: "finished" |
//                "stopped" | "running", answer, normalized_answer,
//                has_answer, confidence, tokens, finish_reason,
//                stop_reason, text (with stream_agent_text)}, ...],
//    "verifier_scores": [{agent, p_yes}, ...]}
class ContemplationSummary {
 public:
  // Every event before the final one, in order.
  void Add(const v1::ContemplateEvent& event);
  nlohmann::ordered_json ToJson(const ContemplationMeta& meta,
                                const v1::ContemplateEvent& final_event) const;

 private:
  struct Agent {
    std::optional<v1::AgentStarted> started;
    std::optional<v1::AgentFinished> finished;
    std::optional<v1::AgentStopped> stopped;
    std::string text;
  };
  std::map<int, Agent> agents_;  // by index
  std::vector<v1::VerifierScores::Score> scores_;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_H_
