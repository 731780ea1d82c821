// The gRPC side of one Generate call: a ServerWriteReactor that, on the
// gRPC thread (cheap, never blocking), authenticates the caller's API key,
// validates the request and admits it under the key's quotas, then runs a
// GenerateJob (with the key's prefix-cache salt) on a request thread and
// streams what the job produces. The key's lease is finished with the
// call's token usage when it ends, however it ends.
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
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "conclave/v1/conclave.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/access_control.h"
#include "server/generate_job.h"
#include "server/metrics/server_metrics.h"
#include "server/metrics/token_timer.h"
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

  // Ends a call that never ran: logs, records, finishes the caller's
  // lease (if any) with no usage, adds the retry-after trailer, finishes.
  void EndEarly(const absl::Status& status);

  // The job's thread.
  void Work();
  void Append(GenerateChunk chunk);
  void Conclude(const absl::StatusOr<GenerateOutcome>& outcome);

  void Log(const grpc::Status& status, const GenerateOutcome* outcome) const;
  // The call's end, for ServerMetrics (once per call, as Log).
  void Record(const grpc::Status& status, const GenerateOutcome* outcome) const;
  // Seconds from the call's start to the first token (0 when there was none).
  double TimeToFirstToken(const GenerateOutcome& outcome) const;

  ServiceContext& service_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const std::string request_id_;
  const absl::Time start_;
  GenerateMode mode_ = GenerateMode::kInstant;
  RequestMode metrics_mode_;  // the mode asked for, valid or not
  int logprobs_ = 0;
  TokenTimer token_timer_;  // touched only by the job's thread
  std::optional<Caller> caller_;  // null when authentication failed
  std::unique_ptr<GenerateJob> job_;  // null when the request was invalid
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_GENERATE_REACTOR_H_
