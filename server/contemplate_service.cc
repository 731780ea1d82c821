#include "server/contemplate_service.h"

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/access_control.h"
#include "server/contemplate_job.h"
#include "server/grpc_auth.h"
#include "server/status_map.h"
#include "server/streaming_reactor.h"

namespace conclave::server {
namespace {

class ContemplateReactor final : public StreamingReactor<v1::ContemplateEvent> {
 public:
  ContemplateReactor(ServiceContext& service, grpc::CallbackServerContext* context,
                     const v1::ContemplateRequest& request)
      : context_(context),
        job_(service, service.NextRequestId(), absl::Now(), "grpc") {
    // The key first: nothing of the request is looked at for an unknown caller.
    absl::StatusOr<Caller> caller = AuthenticateCall(service.access(), *context);
    if (!caller.ok()) {
      EndEarly(caller.status());
      return;
    }
    caller_.emplace(*std::move(caller));
    absl::Status status = job_.Prepare(request);
    if (status.ok()) status = caller_->Admit(job_.Admission());
    if (!status.ok()) {
      EndEarly(status);
      return;
    }
    job_.set_cache_salt(caller_->cache_salt());
    if (absl::Status s = StartWork(service.threads(), [this] { Work(); }); !s.ok()) {
      // StartWork has finished the call.
      job_.End(s.code(), s.message(), &*caller_);
      caller_->Finish(s.code(), {});
    }
  }

 private:
  ~ContemplateReactor() override = default;

  void CancelWork() override { job_.Cancel(); }

  void Work() {
    absl::StatusOr<v1::ContemplateEvent> final_event =
        job_.Run([this](v1::ContemplateEvent e) { OnEvent(std::move(e)); });
    grpc::Status status;
    std::optional<v1::ContemplateEvent> last;
    if (cancelled()) {
      const bool past_deadline = context_->deadline() <= std::chrono::system_clock::now();
      status = past_deadline
                   ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded")
                   : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (!final_event.ok()) {
      status = ToGrpcStatus(final_event.status());
      // The engine's queue refused or expired the agents' request.
      AddRetryAfterTrailer(*context_, WithRetryAfter(final_event.status()));
    } else {
      last = *std::move(final_event);
    }
    const auto code = static_cast<absl::StatusCode>(status.error_code());
    job_.End(code, status.error_message(), &*caller_);
    // What the run spent, also when it failed or was cancelled.
    caller_->Finish(code, job_.Spent());
    Complete(status, std::move(last));
  }

  // Ends a call that never ran (see GenerateReactor::EndEarly).
  void EndEarly(const absl::Status& status) {
    job_.End(status.code(), status.message(), caller_.has_value() ? &*caller_ : nullptr);
    if (caller_.has_value()) caller_->Finish(status.code(), {});
    AddRetryAfterTrailer(*context_, WithRetryAfter(status));
    FinishNow(status);
  }

  // Consecutive text of one agent is merged while a write is in flight.
  void OnEvent(v1::ContemplateEvent e) {
    Emit([&](std::deque<v1::ContemplateEvent>& outbox) {
      if (e.has_agent_text() && !outbox.empty() && outbox.back().has_agent_text() &&
          outbox.back().agent_text().agent() == e.agent_text().agent()) {
        outbox.back().mutable_agent_text()->mutable_text()->append(e.agent_text().text());
        return;
      }
      outbox.push_back(std::move(e));
    });
  }

  grpc::CallbackServerContext* const context_;  // valid until OnDone
  std::optional<Caller> caller_;  // null when authentication failed
  ContemplateJob job_;
};

}  // namespace

grpc::ServerWriteReactor<v1::ContemplateEvent>* ContemplateHandler::Start(
    grpc::CallbackServerContext* context, const v1::ContemplateRequest& request) {
  return new ContemplateReactor(service_, context, request);
}

}  // namespace conclave::server
