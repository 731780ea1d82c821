// The gRPC side of one Generate call: a ServerWriteReactor that validates
// the request on the gRPC thread (cheap, never blocking), runs a GenerateJob
// on a request thread, and streams what the job produces.
//
// The stream discipline (one write in flight, merged deltas, cancellation,
// one Finish after the job has returned) is StreamingReactor's; here, text
// of the same segment is merged while a write is in flight, and OnCancel
// (client cancellation, deadline, server shutdown) cancels the job, which
// aborts its engine request; its KV blocks are freed at the engine's next
// step.
#ifndef CONCLAVE_SERVER_GENERATE_REACTOR_H_
#define CONCLAVE_SERVER_GENERATE_REACTOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "conclave/v1/conclave.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/generate_job.h"
#include "server/service_context.h"
#include "server/streaming_reactor.h"

namespace conclave::server {

class GenerateReactor final : public StreamingReactor<v1::GenerateResponse> {
 public:
  // Called from the service's Generate handler. `service` must outlive the
  // call (the server's Shutdown waits for every call to end).
  GenerateReactor(ServiceContext& service, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest& request);

 private:
  ~GenerateReactor() override = default;

  void CancelWork() override;

  // The job's thread.
  void Work();
  void Append(GenerateChunk chunk);
  void Conclude(const absl::StatusOr<GenerateOutcome>& outcome);

  void Log(const grpc::Status& status, const GenerateOutcome* outcome) const;
  // Seconds from the call's start to the first token (0 when there was none).
  double TimeToFirstToken(const GenerateOutcome& outcome) const;

  ServiceContext& service_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const std::string request_id_;
  const absl::Time start_;
  GenerateMode mode_ = GenerateMode::kInstant;
  int logprobs_ = 0;
  std::unique_ptr<GenerateJob> job_;  // null when the request was invalid
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_GENERATE_REACTOR_H_
