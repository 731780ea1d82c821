// The transport-free half of the Contemplate RPC, shared by gRPC
// (contemplate_service.h) and HTTP (http/contemplations_handler.h), as
// generate_job.h is for Generate: validation and the proto's defaults, the
// engine's admission check, what the run asks of its key's quotas, the run
// itself with every event converted to its conclave.v1 message and handed
// to a sink, the final FinalAnswer event, the tokens spent, and the call's
// log line and metrics.
//
// A transport authenticates the caller, then: Prepare, caller.Admit(
// Admission()), set_cache_salt(caller.cache_salt()), Run on a request
// thread (Cancel from any thread when the client goes away or the server
// stops), End, caller.Finish(code, Spent()).
// Prepare, Run and End are called once each, in that order; Cancel from
// any thread.
#ifndef CONCLAVE_SERVER_CONTEMPLATE_JOB_H_
#define CONCLAVE_SERVER_CONTEMPLATE_JOB_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "conclave/v1/conclave.pb.h"
#include "orchestrator/contemplation.h"
#include "server/access_control.h"
#include "server/auth/quota.h"
#include "server/service_context.h"
#include "server/validation.h"

namespace conclave::server {

class ContemplateJob {
 public:
  using Sink = std::function<void(v1::ContemplateEvent)>;

  // `service` must outlive the job. `request_id` and `start` name and time
  // the call; `transport` ("grpc", "http") goes into its log line.
  ContemplateJob(ServiceContext& service, std::string request_id, absl::Time start,
                 absl::string_view transport);
  ContemplateJob(const ContemplateJob&) = delete;
  ContemplateJob& operator=(const ContemplateJob&) = delete;

  // Validates `request` (ValidateContemplateRequest: INVALID_ARGUMENT naming
  // the field), applies the proto's defaults (ToContemplateOptions, with a
  // drawn seed when it gives none) and asks the engine whether it would
  // queue a new call now (EngineClient::CheckAdmission: RESOURCE_EXHAUSTED
  // when its queue is full), before the key's quotas are charged and before
  // anything is rendered or tokenized.
  absl::Status Prepare(const v1::ContemplateRequest& request);

  // What the prepared run asks of its key's quotas: its agents, thinking
  // budget and the token estimate of EstimateTokens (prompt bytes / 4, once
  // per distinct agent prompt: one without roles, as all agents share one
  // request then; plus every agent's max_tokens). Aggregator passes and
  // forced answers are charged at the end (Spent).
  auth::AdmissionRequest Admission() const;

  // Every engine request of the run (agents, forced answers, verifier and
  // synthesis passes) reuses only blocks cached under `salt`: the caller's
  // key's (Caller::cache_salt).
  void set_cache_salt(uint64_t salt) { options_.cache_salt = salt; }

  // Runs the contemplation on the calling thread, which it blocks. Every
  // event goes to `sink` as its conclave.v1 message, in order
  // (AgentTextDelta as the engine produces it; transports may merge
  // consecutive ones of an agent). Returns the FinalAnswer event; CANCELLED
  // after Cancel; else what the engine reports.
  absl::StatusOr<v1::ContemplateEvent> Run(const Sink& sink);

  // Aborts every engine request of the run; Run returns soon (idempotent;
  // any thread, also before Run).
  void Cancel() { contemplation_.Cancel(); }

  // What the run's engine requests used, for Caller::Finish: the result's
  // tokens after a success, what had been read before an error or Cancel.
  auth::TokenUsage Spent();

  // Logs the call's end (ids, counts, timings; never questions or answers)
  // and records it in ServerMetrics, once per call, whether or not it ran:
  // `code` and `message` as the client gets them, with the run's result
  // when Run succeeded. `caller` names the key (null when authentication
  // failed).
  void End(absl::StatusCode code, absl::string_view message, const Caller* caller);

  const std::string& request_id() const { return request_id_; }
  absl::Time start() const { return start_; }
  const orchestrator::ContemplateOptions& options() const { return options_; }

 private:
  ServiceContext& service_;
  const std::string request_id_;
  const absl::Time start_;
  const std::string transport_;
  orchestrator::ContemplateOptions options_;
  orchestrator::Contemplation contemplation_;
  // Set by Run when the run succeeded; read by End on the same thread.
  std::optional<orchestrator::ContemplateResult> result_;
};

// An event of a run as its conclave.v1 message.
v1::ContemplateEvent ToProtoEvent(const orchestrator::ContemplateEvent& event);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_CONTEMPLATE_JOB_H_
