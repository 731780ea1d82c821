#include "loadtest/load/call.h"

#include <atomic>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace conclave::loadtest {
namespace {

// Whether a message carries model output (see the TTFT definition in the
// header), and what its final message says about tokens.
bool CarriesToken(const v1::GenerateResponse& r) {
  return r.has_delta() && (r.delta().token_ids_size() > 0 || !r.delta().text().empty());
}
bool CarriesToken(const v1::ContemplateEvent& e) {
  return (e.has_agent_text() && !e.agent_text().text().empty()) || e.has_final_answer();
}
void TakeUsage(const v1::GenerateResponse& r, CallResult& out) {
  if (r.has_final()) out.generated_tokens = r.final().usage().generated_tokens();
}
void TakeUsage(const v1::ContemplateEvent& e, CallResult& out) {
  if (!e.has_final_answer()) return;
  out.generated_tokens = e.final_answer().usage().generated_tokens();
  out.agent_tokens = e.final_answer().usage().agent_tokens();
}

template <typename Request, typename Response>
class StreamCall final : public Call, public grpc::ClientReadReactor<Response> {
 public:
  // Starts `request` on `context` with this reactor (the stub's async method).
  using Method =
      std::function<void(grpc::ClientContext*, const Request*, grpc::ClientReadReactor<Response>*)>;

  StreamCall(Method method, Request request, Mode mode, const CallOptions& options, Done done)
      : method_(std::move(method)),
        request_(std::move(request)),
        id_(options.id),
        run_start_(options.run_start),
        done_(std::move(done)) {
    result_.mode = mode;
    if (options.deadline != absl::InfiniteDuration()) {
      context_.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
    }
    if (!options.api_key.empty()) {
      context_.AddMetadata("authorization", absl::StrCat("Bearer ", options.api_key));
    }
  }

  void Start() override {
    start_ = absl::Now();
    result_.start = start_ - run_start_;
    method_(&context_, &request_, this);
    this->StartRead(&response_);
    this->StartCall();
  }

  void Cancel(bool at_drain) override {
    if (at_drain) cancelled_at_drain_.store(true);
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream has ended; OnDone follows
    if (result_.first_token == absl::InfiniteDuration() && CarriesToken(response_)) {
      result_.first_token = absl::Now() - start_;
    }
    TakeUsage(response_, result_);
    this->StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    result_.latency = absl::Now() - start_;
    result_.code = status.error_code();
    result_.message = status.error_message();
    result_.cancelled_at_drain = cancelled_at_drain_.load();
    const auto& trailers = context_.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after"); it != trailers.end()) {
      int64_t seconds = 0;
      if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &seconds) &&
          seconds > 0) {
        result_.retry_after = absl::Seconds(seconds);
      }
    }
    // `done` may destroy this call: keep what it needs on the stack.
    Done done = std::move(done_);
    done(id_, std::move(result_));
  }

 private:
  const Method method_;
  grpc::ClientContext context_;
  Request request_;
  Response response_;  // the message being read
  const int64_t id_;
  const absl::Time run_start_;
  Done done_;
  absl::Time start_;
  CallResult result_;  // touched by one reaction at a time
  std::atomic<bool> cancelled_at_drain_{false};
};

}  // namespace

std::unique_ptr<Call> NewGenerateCall(v1::Conclave::Stub& stub, v1::GenerateRequest request,
                                      Mode mode, const CallOptions& options, Call::Done done) {
  auto method = [&stub](grpc::ClientContext* c, const v1::GenerateRequest* r,
                        grpc::ClientReadReactor<v1::GenerateResponse>* reactor) {
    stub.async()->Generate(c, r, reactor);
  };
  return std::make_unique<StreamCall<v1::GenerateRequest, v1::GenerateResponse>>(
      method, std::move(request), mode, options, std::move(done));
}

std::unique_ptr<Call> NewContemplateCall(v1::Conclave::Stub& stub, v1::ContemplateRequest request,
                                         const CallOptions& options, Call::Done done) {
  auto method = [&stub](grpc::ClientContext* c, const v1::ContemplateRequest* r,
                        grpc::ClientReadReactor<v1::ContemplateEvent>* reactor) {
    stub.async()->Contemplate(c, r, reactor);
  };
  return std::make_unique<StreamCall<v1::ContemplateRequest, v1::ContemplateEvent>>(
      method, std::move(request), Mode::kContemplate, options, std::move(done));
}

}  // namespace conclave::loadtest
