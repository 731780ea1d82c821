#include "loadtest/load/http_stream.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace conclave::loadtest {
namespace {

using Json = nlohmann::json;

// Enough of a malformed event to recognise it.
constexpr size_t kMaxQuotedEvent = 100;

// `object[key]` when `object` is an object holding it, else null.
const Json& Field(const Json& object, const char* key) {
  static const Json kNull;
  if (!object.is_object()) return kNull;
  const auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

bool IsNonEmptyString(const Json& value) {
  return value.is_string() && !value.get_ref<const std::string&>().empty();
}

// A count: a JSON number, or a string of digits (protobuf's JSON mapping
// prints 64-bit integers so); 0 otherwise.
int64_t Count(const Json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  int64_t n = 0;
  if (value.is_string() && absl::SimpleAtoi(value.get_ref<const std::string&>(), &n)) return n;
  return 0;
}

// {"message", "type", "code"} as "TYPE (CODE): MESSAGE".
std::string DescribeError(const Json& error) {
  const Json& type = Field(error, "type");
  const Json& code = Field(error, "code");
  const Json& message = Field(error, "message");
  std::string out = type.is_string() ? type.get<std::string>() : "error";
  if (code.is_string()) absl::StrAppend(&out, " (", code.get_ref<const std::string&>(), ")");
  absl::StrAppend(&out, ": ", message.is_string() ? message.get<std::string>() : error.dump());
  return out;
}

}  // namespace

std::vector<std::string> SseParser::Feed(absl::string_view bytes) {
  std::vector<std::string> events;
  while (!bytes.empty()) {
    const size_t end = bytes.find('\n');
    if (end == absl::string_view::npos) {
      line_.append(bytes.data(), bytes.size());
      break;
    }
    line_.append(bytes.data(), end);
    bytes.remove_prefix(end + 1);
    absl::string_view line = line_;
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    if (line.empty()) {
      if (has_data_) events.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
    } else if (line.front() != ':') {
      const size_t colon = line.find(':');
      const absl::string_view field = line.substr(0, colon);
      absl::string_view value =
          colon == absl::string_view::npos ? absl::string_view() : line.substr(colon + 1);
      if (absl::StartsWith(value, " ")) value.remove_prefix(1);
      if (field == "data") {
        if (has_data_) data_.push_back('\n');
        data_.append(value.data(), value.size());
        has_data_ = true;
      }
    }
    line_.clear();
  }
  return events;
}

void StreamReader::Feed(absl::string_view bytes) {
  for (const std::string& data : parser_.Feed(bytes)) Read(data);
}

void StreamReader::Read(absl::string_view data) {
  if (done_) return;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  const Json event = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!event.is_object()) {
    if (!error_.has_value()) {
      error_ = absl::StrCat("an event that is not a JSON object: ", data.substr(0, kMaxQuotedEvent));
    }
    return;
  }
  if (const Json& error = Field(event, "error"); !error.is_null()) {
    if (!error_.has_value()) error_ = DescribeError(error);
    return;
  }
  if (route_ == HttpRoute::kChatCompletions) {
    ReadChatChunk(event);
  } else {
    ReadContemplateEvent(event);
  }
}

void StreamReader::ReadChatChunk(const Json& chunk) {
  const Json& choices = Field(chunk, "choices");
  if (choices.is_array()) {
    for (const Json& choice : choices) {
      if (IsNonEmptyString(Field(Field(choice, "delta"), "content"))) has_token_ = true;
    }
  }
  const Json& usage = Field(chunk, "usage");
  if (usage.is_object()) generated_tokens_ = Count(Field(usage, "completion_tokens"));
}

void StreamReader::ReadContemplateEvent(const Json& event) {
  if (IsNonEmptyString(Field(Field(event, "agent_text"), "text"))) has_token_ = true;
  const Json& final_answer = Field(event, "final_answer");
  if (!final_answer.is_object()) return;
  has_token_ = true;
  const Json& usage = Field(final_answer, "usage");
  generated_tokens_ = Count(Field(usage, "generated_tokens"));
  agent_tokens_ = Count(Field(usage, "agent_tokens"));
}

}  // namespace conclave::loadtest
