// OpenAI's chat completions (POST /v1/chat/completions) <-> conclave's
// generation: the request body becomes a GeneratePlan (MODE_INSTANT, n
// sequences), and a run's output becomes a chat.completion or
// chat.completion.chunk object. Pure functions with no transport and no
// engine, so that tests and fuzzers call them directly; the handler
// (chat_completions_handler.h) runs the plan with GenerateJob.
//
// docs/http.md lists the fields: supported, ignored (user, metadata, ...)
// and rejected with 400 naming the field (tools, response_format other than
// text, ...); unknown fields are rejected like OpenAI does. Absent
// temperature and top_p take OpenAI's defaults (1 and 1), not the gRPC
// API's.
// Thread-safe: pure functions.
#ifndef CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_H_
#define CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/request.h"
#include "nlohmann/json.hpp"
#include "server/validation.h"

namespace conclave::server::http {

// Most nesting of a request body's JSON (objects and arrays); deeper
// bodies are refused before anything looks at them.
inline constexpr int kMaxJsonDepth = 64;

// A valid POST /v1/chat/completions body.
struct ChatRequest {
  // MODE_INSTANT: messages, sampling (temperature, top_p, penalties, seed,
  // sampling.logprobs = top_logprobs), max_tokens, stop and n.
  GeneratePlan plan;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report each token's logprob (and top_logprobs alternatives)
};

// Parses `body` (UTF-8 JSON, at most kMaxJsonDepth deep) and validates
// every field against `limits`. Errors (http_response.h payloads name the
// field in `param`):
//   INVALID_ARGUMENT  not UTF-8, not JSON, not an object; a field of the
//                     wrong type or out of range; a missing or empty
//                     `messages`; an OpenAI field conclave does not
//                     implement (tools, response_format json_object, ...);
//                     an unknown field
//   NOT_FOUND         `model` is neither empty nor the served model
//                     (code "model_not_found")
// Messages never appear in error messages.
absl::StatusOr<ChatRequest> ParseChatCompletionRequest(absl::string_view body,
                                                       const RequestLimits& limits);

// The fields every response object of one call shares.
struct ChatMeta {
  std::string id;       // "chatcmpl-<request id>"
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// One choice's output: text, tokens (with logprobs; the end-of-generation
// token left out) and why it ended.
struct ChatChoice {
  std::string text;
  std::vector<engine::TokenOutput> tokens;
  engine::FinishReason finish = engine::FinishReason::kNone;
};

// A token's text as the tokenizer renders it (possibly part of a UTF-8
// character).
using TokenPiece = absl::FunctionRef<std::string(int32_t)>;

// OpenAI's finish_reason: "stop" (end-of-generation token or stop string),
// "length" (max_tokens or the context), null (still running, aborted).
nlohmann::ordered_json FinishReasonJson(engine::FinishReason finish);

// {"prompt_tokens", "completion_tokens", "total_tokens",
//  "prompt_tokens_details": {"cached_tokens"}}.
nlohmann::ordered_json UsageJson(const engine::RequestUsage& usage);

// choices[i].logprobs: {"content": [{"token", "logprob", "bytes",
// "top_logprobs": [{"token", "logprob", "bytes"}, ...]}, ...],
// "refusal": null}.
nlohmann::ordered_json LogprobsJson(absl::Span<const engine::TokenOutput> tokens, TokenPiece piece);

// The non-streaming response: object "chat.completion".
nlohmann::ordered_json ChatCompletionJson(const ChatMeta& meta,
                                          absl::Span<const ChatChoice> choices,
                                          const engine::RequestUsage& usage, bool logprobs,
                                          TokenPiece piece);

// One streaming chunk (object "chat.completion.chunk") with one choice:
// `delta` ({"role": "assistant", "content": ""} first, then {"content":
// ...}, {} with the finish reason), its logprobs (null or LogprobsJson) and
// finish_reason. With include_usage the chunk says "usage": null.
nlohmann::ordered_json ChatChunkJson(const ChatMeta& meta, int index, nlohmann::ordered_json delta,
                                     nlohmann::ordered_json logprobs,
                                     nlohmann::ordered_json finish_reason, bool include_usage);

// The last chunk of a stream with stream_options.include_usage: no
// choices, the call's usage.
nlohmann::ordered_json UsageChunkJson(const ChatMeta& meta, const engine::RequestUsage& usage);

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_H_
