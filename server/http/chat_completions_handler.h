// POST /v1/chat/completions: one OpenAI chat completion call, through the
// same steps as gRPC's Generate (generate_reactor.h): the caller's key is
// authenticated (AccessControl) before the body is read, the body is
// parsed and validated (chat_completions.h), the engine's queue is asked
// (CheckAdmission), the key's quotas admit it (GenerateAdmission), and a
// GenerateJob runs with the key's prefix-cache salt on a request thread of
// the shared ServiceContext (so --max-concurrent-requests counts both
// transports). When the call ends, however it ends, the key's lease is
// charged what it used and the call is logged (ids, counts, timings; never
// text) and counted in ServerMetrics.
//
// The HTTP worker thread answers: without streaming it waits for the job
// and sends one chat.completion; with "stream": true it waits for the first
// token (so errors found before it, such as a prompt too long, are still
// plain HTTP errors), then writes chat.completion.chunk events as the job
// produces them (merged while the client is slow) and "data: [DONE]". A
// failed write (the client went away) cancels the job, whose engine
// request is aborted and its KV blocks freed; so does server shutdown.
// Thread-safe: Handle is called concurrently by the HTTP worker threads.
#ifndef CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_HANDLER_H_
#define CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_HANDLER_H_

#include "server/http/endpoint.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace conclave::server::http {

class ChatCompletionsHandler {
 public:
  // `context`'s members must outlive the handler and every call it serves.
  explicit ChatCompletionsHandler(EndpointContext context) : context_(context) {}

  // Serves one call; `read_body` reads its body within the server's limits.
  // Returns when the call has ended, or, when streaming, once `res` holds
  // the content provider that writes the rest of it.
  void Handle(const httplib::Request& req, httplib::Response& res, BodyReader read_body);

 private:
  EndpointContext context_;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_CHAT_COMPLETIONS_HANDLER_H_
