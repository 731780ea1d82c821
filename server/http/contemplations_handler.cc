#include "server/http/contemplations_handler.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "httplib.h"
#include "server/access_control.h"
#include "server/contemplate_job.h"
#include "server/http/contemplations.h"
#include "server/http/outbox.h"

namespace conclave::server::http {
namespace {

// One call, shared by the HTTP worker thread that answers it and the
// request thread that runs its job; whichever is done last frees it.
class ContemplationCall : public std::enable_shared_from_this<ContemplationCall> {
 public:
  explicit ContemplationCall(EndpointContext context)
      : context_(context),
        service_(context.service),
        job_(service_, service_.NextRequestId(), absl::Now(), "http") {
    meta_.id = absl::StrCat("contemplation-", job_.request_id());
    meta_.created = UnixSeconds(job_.start());
    meta_.model = service_.model().id;
  }

  // The HTTP worker thread's part (see ContemplationsHandler::Handle).
  void Serve(const httplib::Request& req, httplib::Response& res, BodyReader read_body);

 private:
  // Ends a call that never ran (see ChatCall::EndEarly).
  void EndEarly(httplib::Response& res, const HttpError& error);
  // The request thread's part.
  void Work();
  // Stops the run for `why` (the first reason is kept; any thread).
  void Cancel(absl::Status why);
  void Respond(httplib::Response& res);
  bool WriteStream(httplib::DataSink& sink);

  const EndpointContext context_;
  ServiceContext& service_;
  ContemplationMeta meta_;
  bool stream_ = false;
  std::optional<Caller> caller_;  // set once authenticated
  ContemplateJob job_;
  Outbox<v1::ContemplateEvent> outbox_;
  // The FinalAnswer event; set before outbox_.Close with OK, read after it.
  std::optional<v1::ContemplateEvent> final_event_;

  std::mutex mu_;               // guards cancel_reason_
  absl::Status cancel_reason_;  // OK until Cancel

  // Last: destroyed first (see ChatCall).
  std::unique_ptr<ActiveCalls::Registration> registration_;
};

// A ValidateContemplateRequest error, naming its field in `param`.
absl::Status WithValidationParam(absl::Status status) {
  const std::string param = ValidationParam(status.message());
  return param.empty() ? status : WithParam(std::move(status), param);
}

void ContemplationCall::Serve(const httplib::Request& req, httplib::Response& res,
                              BodyReader read_body) {
  if (context_.draining.load()) return EndEarly(res, ShuttingDownError());
  // The key first: nothing of the request is read for an unknown caller.
  absl::StatusOr<Caller> caller = service_.access().Authenticate(AuthorizationOf(req));
  if (!caller.ok()) return EndEarly(res, ToHttpError(caller.status()));
  caller_.emplace(*std::move(caller));
  std::string body;
  if (std::optional<HttpError> error = read_body(&body); error.has_value()) {
    return EndEarly(res, *error);
  }
  absl::StatusOr<ContemplationRequest> parsed = ParseContemplationRequest(body);
  if (!parsed.ok()) return EndEarly(res, ToHttpError(parsed.status()));
  stream_ = parsed->stream;
  if (absl::Status s = job_.Prepare(parsed->request); !s.ok()) {
    return EndEarly(res, ToHttpError(WithValidationParam(std::move(s))));
  }
  if (absl::Status s = caller_->Admit(job_.Admission()); !s.ok()) {
    return EndEarly(res, ToHttpError(s));
  }
  job_.set_cache_salt(caller_->cache_salt());
  registration_ =
      context_.calls.Add([this] { Cancel(absl::UnavailableError("the server is shutting down")); });
  // Registered first, then checked (see ChatCall::Serve).
  if (context_.draining.load()) {
    registration_.reset();
    return EndEarly(res, ShuttingDownError());
  }
  std::shared_ptr<ContemplationCall> self = shared_from_this();
  if (absl::Status s = service_.threads().Run([self] { self->Work(); }); !s.ok()) {
    registration_.reset();
    return EndEarly(res, ToHttpError(s));
  }
  Respond(res);
}

void ContemplationCall::EndEarly(httplib::Response& res, const HttpError& error) {
  job_.End(error.canonical, error.message, caller_.has_value() ? &*caller_ : nullptr);
  if (caller_.has_value()) caller_->Finish(error.canonical, {});
  SendError(res, error);
}

void ContemplationCall::Work() {
  absl::StatusOr<v1::ContemplateEvent> final_event = job_.Run([this](v1::ContemplateEvent e) {
    outbox_.Emit([&](std::deque<v1::ContemplateEvent>& items) {
      if (e.has_agent_text() && !items.empty() && items.back().has_agent_text() &&
          items.back().agent_text().agent() == e.agent_text().agent()) {
        items.back().mutable_agent_text()->mutable_text()->append(e.agent_text().text());
        return;
      }
      items.push_back(std::move(e));
    });
  });
  absl::Status status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = cancel_reason_;
  }
  if (status.ok()) status = final_event.status();
  if (status.ok()) final_event_ = *std::move(final_event);
  job_.End(status.code(), status.message(), &*caller_);
  // What the run spent, also when it failed or was cancelled; the lease
  // ends before the answer is written.
  caller_->Finish(status.code(), job_.Spent());
  outbox_.Close(status);
}

void ContemplationCall::Cancel(absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancel_reason_.ok()) return;
    cancel_reason_ = std::move(why);
  }
  job_.Cancel();
}

void ContemplationCall::Respond(httplib::Response& res) {
  if (stream_) {
    // Headers wait for the first event: an error before it is still a
    // plain HTTP error.
    if (!outbox_.WaitForOutput() && !outbox_.status().ok()) {
      SendError(res, ToHttpError(outbox_.status()));
      registration_.reset();
      return;
    }
    std::shared_ptr<ContemplationCall> self = shared_from_this();
    SendEventStream(
        res, [self](httplib::DataSink& sink) { return self->WriteStream(sink); },
        [self](bool success) {
          if (!success) {
            self->Cancel(absl::CancelledError("the client closed the connection"));
            self->outbox_.Abandon();
          }
          self->registration_.reset();
        });
    return;
  }
  ContemplationSummary summary;
  std::deque<v1::ContemplateEvent> items;
  while (outbox_.Take(items)) {
    for (const v1::ContemplateEvent& e : items) summary.Add(e);
  }
  registration_.reset();
  const absl::Status status = outbox_.status();
  if (!status.ok()) return SendError(res, ToHttpError(status));
  SendJson(res, 200, DumpJson(summary.ToJson(meta_, *final_event_)));
}

bool ContemplationCall::WriteStream(httplib::DataSink& sink) {
  const auto write = [&](const std::string& data) {
    if (sink.write(data.data(), data.size())) return true;
    // The client went away: stop every agent now.
    Cancel(absl::CancelledError("the client closed the connection"));
    outbox_.Abandon();
    return false;
  };
  std::deque<v1::ContemplateEvent> items;
  while (outbox_.Take(items)) {
    for (const v1::ContemplateEvent& e : items) {
      if (!write(SseData(DumpJson(EventJson(e))))) return false;
    }
  }
  const absl::Status status = outbox_.status();
  // Too late for an HTTP status: an error goes in the stream.
  const std::string last = status.ok() ? SseData(DumpJson(EventJson(*final_event_)))
                                       : SseData(ErrorBody(ToHttpError(status)));
  if (!write(last) || !write(std::string(kSseDone))) return false;
  sink.done();
  return true;
}

}  // namespace

void ContemplationsHandler::Handle(const httplib::Request& req, httplib::Response& res,
                                   BodyReader read_body) {
  std::make_shared<ContemplationCall>(context_)->Serve(req, res, read_body);
}

}  // namespace conclave::server::http
