// What a streamed answer of the HTTP endpoint (docs/http.md) tells the load
// generator: the server-sent-event framing, then each event's meaning.
//
// Framing (SseParser): lines end in "\n" or "\r\n"; "data:" lines (one
// optional space after the colon) add to the event, a blank line ends it;
// several data lines of one event are joined with "\n"; comments (":...")
// and other fields are skipped.
//
// Meaning (StreamReader), with the time-to-first-token rule of call.h:
//   chat completions  a chunk with a choice whose delta.content is not empty
//                     carries a token; the include_usage chunk's
//                     usage.completion_tokens are the generated tokens
//   contemplations    {"agent_text": {"text": not empty}} or
//                     {"final_answer": ...} carries a token (agent_started
//                     does not); final_answer.usage.generated_tokens and
//                     .agent_tokens
//   both              {"error": {"message", "type", "code"}} makes the call
//                     an error (after a 200: the server sends it when the
//                     stream fails); "[DONE]" ends the stream, and anything
//                     after it is ignored; a payload that is not a JSON object
//                     is an error too.
// Not thread-safe: one call's thread owns a reader.
#ifndef CONCLAVE_LOADTEST_LOAD_HTTP_STREAM_H_
#define CONCLAVE_LOADTEST_LOAD_HTTP_STREAM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "loadtest/load/http_requests.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {

class SseParser {
 public:
  // Takes the next bytes of the stream (any split, even inside a line);
  // returns the data of the events they end, in order.
  std::vector<std::string> Feed(absl::string_view bytes);

 private:
  std::string line_;  // the unfinished line
  std::string data_;  // the unfinished event's data
  bool has_data_ = false;
};

class StreamReader {
 public:
  explicit StreamReader(HttpRoute route) : route_(route) {}

  // Takes the next bytes of a 200 answer's body.
  void Feed(absl::string_view bytes);
  // Reads one event's data (Feed calls it for every event).
  void Read(absl::string_view data);

  // Model output has arrived (the first time this turns true is the first
  // token).
  bool has_token() const { return has_token_; }
  bool done() const { return done_; }  // data: [DONE] arrived
  // The first error event as "TYPE (CODE): MESSAGE" ("TYPE: MESSAGE" when
  // the code is null), or what was wrong with a malformed event.
  const std::optional<std::string>& error() const { return error_; }
  int64_t generated_tokens() const { return generated_tokens_; }
  int64_t agent_tokens() const { return agent_tokens_; }

 private:
  void ReadChatChunk(const nlohmann::json& chunk);
  void ReadContemplateEvent(const nlohmann::json& event);

  const HttpRoute route_;
  SseParser parser_;
  bool has_token_ = false;
  bool done_ = false;
  std::optional<std::string> error_;
  int64_t generated_tokens_ = 0;
  int64_t agent_tokens_ = 0;
};

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_HTTP_STREAM_H_
