// The HTTP request each WorkItem sends to the server's OpenAI-compatible
// endpoint (docs/http.md): the same question, seed and limits as its gRPC
// request (requests.h), streamed.
//
//   kInstant      POST /v1/chat/completions
//                 {"messages": [{"role": "user", "content": QUESTION}],
//                  "max_tokens", "seed" (as OpenAI's signed 64 bits),
//                  "stream": true, "stream_options": {"include_usage": true}}
//                 (the usage chunk tells the generated tokens). Sampling
//                 is the endpoint's default (OpenAI's temperature 1, top_p 1;
//                 gRPC's defaults are 0.8 and 0.95), as an OpenAI client
//                 sends it.
//   kContemplate  POST /v1/contemplations: MakeContemplateRequest in
//                 protobuf's JSON mapping plus "stream": true
//   kThinking     has no HTTP route: a bug to ask for (the caller refuses
//                 such a mix).
// Thread-safe: pure functions.
#ifndef CONCLAVE_LOADTEST_LOAD_HTTP_REQUESTS_H_
#define CONCLAVE_LOADTEST_LOAD_HTTP_REQUESTS_H_

#include <string>

#include "loadtest/load/requests.h"
#include "loadtest/load/workload.h"

namespace conclave::loadtest {

enum class HttpRoute { kChatCompletions, kContemplations };

// "/v1/chat/completions", "/v1/contemplations".
const char* HttpRoutePath(HttpRoute route);

// Whether `mode` has an HTTP route (kInstant, kContemplate).
bool HasHttpRoute(Mode mode);

struct HttpRequest {
  HttpRoute route = HttpRoute::kChatCompletions;
  std::string body;  // JSON
};

// `item.mode` must have an HTTP route.
HttpRequest MakeHttpRequest(const WorkItem& item, const std::string& question,
                            const RequestShape& shape);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_HTTP_REQUESTS_H_
