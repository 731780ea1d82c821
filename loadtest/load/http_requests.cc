#include "loadtest/load/http_requests.h"

#include <cstdint>

#include "google/protobuf/util/json_util.h"
#include "kernels/check.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {
namespace {

using Json = nlohmann::ordered_json;

std::string ChatBody(const WorkItem& item, const std::string& question,
                     const RequestShape& shape) {
  const Json body = {
      {"messages", Json::array({{{"role", "user"}, {"content", question}}})},
      {"max_tokens", shape.max_tokens},
      // OpenAI's seed is signed; the server wraps negative ones back.
      {"seed", static_cast<int64_t>(item.seed)},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  return body.dump();
}

std::string ContemplationBody(const WorkItem& item, const std::string& question,
                              const RequestShape& shape) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string text;
  const auto printed = google::protobuf::util::MessageToJsonString(
      MakeContemplateRequest(item, question, shape), &text, options);
  CHECK(printed.ok()) << "ContemplateRequest to JSON: " << printed.ToString();
  // Printed by protobuf: parses.
  Json body = Json::parse(text);
  body["stream"] = true;  // the endpoint's HTTP-only field
  return body.dump();
}

}  // namespace

const char* HttpRoutePath(HttpRoute route) {
  return route == HttpRoute::kChatCompletions ? "/v1/chat/completions" : "/v1/contemplations";
}

bool HasHttpRoute(Mode mode) { return mode != Mode::kThinking; }

HttpRequest MakeHttpRequest(const WorkItem& item, const std::string& question,
                            const RequestShape& shape) {
  CHECK(HasHttpRoute(item.mode)) << ModeName(item.mode) << " has no HTTP route";
  HttpRequest r;
  if (item.mode == Mode::kContemplate) {
    r.route = HttpRoute::kContemplations;
    r.body = ContemplationBody(item, question, shape);
  } else {
    r.route = HttpRoute::kChatCompletions;
    r.body = ChatBody(item, question, shape);
  }
  return r;
}

}  // namespace conclave::loadtest
