// POST /v1/contemplations: one Contemplate call over HTTP, through the same
// transport-free ContemplateJob as gRPC (contemplate_job.h): the caller's
// key is authenticated before the body is read, the body is parsed
// (contemplations.h) and validated as the gRPC request is, the engine's
// queue and the key's quotas admit it, and the run goes on a request
// thread of the shared ServiceContext with the key's prefix-cache salt.
// When it ends, however it ends, the key's lease is charged what it spent
// and the call is logged and counted (ContemplateJob::End).
//
// Without "stream" the HTTP worker thread waits for the final answer and
// sends one object (ContemplationSummary); with "stream": true it waits for
// the first event (errors before it are plain HTTP errors), then writes
// every ContemplateEvent as a server-sent event (consecutive text of one
// agent merged while the client is slow) and "data: [DONE]". A failed
// write (the client went away) and server shutdown cancel the run, which
// aborts every agent and frees its KV blocks.
// Thread-safe: Handle is called concurrently by the HTTP worker threads.
#ifndef CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_HANDLER_H_
#define CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_HANDLER_H_

#include "server/http/endpoint.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace conclave::server::http {

class ContemplationsHandler {
 public:
  // `context`'s members must outlive the handler and every call it serves.
  explicit ContemplationsHandler(EndpointContext context) : context_(context) {}

  // Serves one call (see ChatCompletionsHandler::Handle).
  void Handle(const httplib::Request& req, httplib::Response& res, BodyReader read_body);

 private:
  EndpointContext context_;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_CONTEMPLATIONS_HANDLER_H_
