#include "server/http/contemplations.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "server/http/chat_completions.h"
#include "server/http/http_response.h"
#include "server/http/json_body.h"

namespace conclave::server::http {
namespace {

// Requests are read as nlohmann::json; responses keep protobuf's field
// order (ordered_json).
using Json = nlohmann::json;
using OutJson = nlohmann::ordered_json;

// Longest protobuf parser message passed on (they may quote a value).
constexpr size_t kMaxParserMessage = 200;

OutJson ToJsonValue(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) {
    return OutJson::object();
  }
  // Printed by protobuf from a valid message: parses.
  return OutJson::parse(text, nullptr, /*allow_exceptions=*/false);
}

// Whether `key` names a field of `descriptor` by its proto or JSON name.
bool HasField(const google::protobuf::Descriptor& descriptor, absl::string_view key) {
  for (int i = 0; i < descriptor.field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = descriptor.field(i);
    if (f->name() == key || f->json_name() == key) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<ContemplationRequest> ParseContemplationRequest(absl::string_view body) {
  absl::StatusOr<Json> parsed = ParseJsonObject(body, kMaxJsonDepth);
  if (!parsed.ok()) return parsed.status();
  Json j = *std::move(parsed);

  ContemplationRequest out;
  if (auto it = j.find("stream"); it != j.end()) {
    if (it->is_boolean()) {
      out.stream = it->get<bool>();
    } else if (!it->is_null()) {
      return InvalidField("stream", "stream must be a boolean");
    }
    j.erase(it);
  }
  // Unknown fields are named here; protobuf's parser would say less.
  const google::protobuf::Descriptor* descriptor = v1::ContemplateRequest::descriptor();
  for (const auto& [key, value] : j.items()) {
    if (!HasField(*descriptor, key)) {
      return InvalidField(
          key, absl::StrCat("unrecognized field ", key.size() <= 64 ? key : "(long name)",
                            " (the body is a conclave.v1.ContemplateRequest)"));
    }
  }
  // "role": "user" is read as role_name "user" (the enum wants ROLE_USER).
  if (auto messages = j.find("messages"); messages != j.end() && messages->is_array()) {
    for (Json& m : *messages) {
      if (!m.is_object()) continue;
      auto role = m.find("role");
      if (role == m.end() || !role->is_string()) continue;
      const std::string name = role->get<std::string>();
      if (absl::StartsWith(name, "ROLE_")) continue;
      m.erase(role);
      if (m.contains("role_name") || m.contains("roleName")) {
        return InvalidField("messages", "a message gives both role and role_name");
      }
      m["role_name"] = name;
    }
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status =
      google::protobuf::util::JsonStringToMessage(DumpJson(j), &out.request, options);
  if (!status.ok()) {
    std::string message(status.message());
    if (message.size() > kMaxParserMessage) message = message.substr(0, kMaxParserMessage) + "...";
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not a valid conclave.v1.ContemplateRequest: ", message));
  }
  return out;
}

std::string ValidationParam(absl::string_view message) {
  size_t end = 0;
  while (end < message.size()) {
    const char c = message[end];
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '[' || c == ']')) break;
    ++end;
  }
  if (end == 0 || end == message.size()) return "";
  const char next = message[end];
  if (next != '=' && next != ' ') return "";
  absl::string_view field = message.substr(0, end);
  // "model "x" is not served here" names the model; prose starts otherwise.
  if (field == "the" || field == "a") return "";
  return std::string(field);
}

nlohmann::ordered_json EventJson(const v1::ContemplateEvent& event) { return ToJsonValue(event); }

void ContemplationSummary::Add(const v1::ContemplateEvent& event) {
  switch (event.event_case()) {
    case v1::ContemplateEvent::kAgentStarted:
      agents_[event.agent_started().agent()].started = event.agent_started();
      break;
    case v1::ContemplateEvent::kAgentText:
      agents_[event.agent_text().agent()].text += event.agent_text().text();
      break;
    case v1::ContemplateEvent::kAgentFinished:
      agents_[event.agent_finished().agent()].finished = event.agent_finished();
      break;
    case v1::ContemplateEvent::kAgentStopped:
      agents_[event.agent_stopped().agent()].stopped = event.agent_stopped();
      break;
    case v1::ContemplateEvent::kVerifierScores:
      for (const v1::VerifierScores::Score& s : event.verifier_scores().scores()) {
        scores_.push_back(s);
      }
      break;
    default: break;
  }
}

nlohmann::ordered_json ContemplationSummary::ToJson(const ContemplationMeta& meta,
                                                    const v1::ContemplateEvent& final_event) const {
  OutJson agents = OutJson::array();
  for (const auto& [index, a] : agents_) {
    OutJson entry = a.started.has_value() ? ToJsonValue(*a.started) : OutJson{{"agent", index}};
    if (a.finished.has_value()) entry.update(ToJsonValue(*a.finished));
    if (a.stopped.has_value()) {
      entry["stop_reason"] = v1::AgentStopped::Reason_Name(a.stopped->reason());
      entry["tokens"] = a.stopped->tokens();
    }
    entry["status"] = a.finished.has_value()  ? "finished"
                      : a.stopped.has_value() ? "stopped"
                                              : "running";
    if (!a.text.empty()) entry["text"] = a.text;
    agents.push_back(std::move(entry));
  }
  OutJson scores = OutJson::array();
  for (const v1::VerifierScores::Score& s : scores_) scores.push_back(ToJsonValue(s));
  OutJson final_answer =
      final_event.has_final_answer() ? ToJsonValue(final_event.final_answer()) : OutJson::object();
  return {{"id", meta.id},
          {"object", "contemplation"},
          {"created", meta.created},
          {"model", meta.model},
          {"final_answer", std::move(final_answer)},
          {"agents", std::move(agents)},
          {"verifier_scores", std::move(scores)}};
}

}  // namespace conclave::server::http
