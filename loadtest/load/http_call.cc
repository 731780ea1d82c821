#include "loadtest/load/http_call.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "httplib.h"
#include "loadtest/load/http_outcome.h"
#include "loadtest/load/http_stream.h"

namespace conclave::loadtest {
namespace {

// Connecting (and writing the small request) on loopback takes
// milliseconds; a server that takes this long is not accepting.
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);
// Reads without a deadline: a stream silent this long is given up (a drain
// cancels calls long before).
constexpr absl::Duration kReadTimeoutWithoutDeadline = absl::Hours(1);
// How much of a refusal's body is kept (its error.message).
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr absl::Duration kProbeInterval = absl::Milliseconds(100);

std::chrono::microseconds ToMicros(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

// A client for one request to `target`; `deadline`: per call, or infinite.
std::unique_ptr<httplib::Client> NewClient(const HostPort& target, absl::Duration deadline) {
  auto client = std::make_unique<httplib::Client>(target.host, target.port);
  const absl::Duration connect = std::min(kConnectTimeout, deadline);
  client->set_connection_timeout(ToMicros(connect));
  client->set_write_timeout(ToMicros(connect));
  client->set_read_timeout(
      ToMicros(deadline == absl::InfiniteDuration() ? kReadTimeoutWithoutDeadline : deadline));
  client->set_tcp_nodelay(true);
  return client;
}

class HttpCall final : public Call {
 public:
  HttpCall(CallThreads& threads, const HostPort& target, Mode mode, HttpRequest request,
           const CallOptions& options, Done done)
      : threads_(threads),
        client_(NewClient(target, options.deadline)),
        route_(request.route),
        body_(std::move(request.body)),
        api_key_(options.api_key),
        deadline_(options.deadline),
        id_(options.id),
        run_start_(options.run_start),
        done_(std::move(done)),
        reader_(request.route) {
    result_.mode = mode;
  }

  void Start() override {
    start_ = absl::Now();
    result_.start = start_ - run_start_;
    threads_.Start([this] { Run(); });
  }

  void Cancel(bool at_drain) override {
    if (at_drain) cancelled_at_drain_.store(true);
    cancelled_.store(true);
    // Shuts the socket of a request in progress; one that has not written
    // its body yet sees cancelled_ in the body's provider.
    client_->stop();
  }

 private:
  // On the call's thread: sends, reads, ends.
  void Run() {
    httplib::Request req;
    req.method = "POST";
    req.path = HttpRoutePath(route_);
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    if (!api_key_.empty()) req.set_header("Authorization", absl::StrCat("Bearer ", api_key_));
    // The body comes from a provider rather than req.body because httplib
    // calls it once the request holds its socket: a Cancel before then
    // (whose stop() finds no socket to shut) is seen here; one after it
    // shuts the socket. (content_provider_ is what httplib's own Post with
    // a provider fills; 0.11.4 has no Post taking a content receiver too.)
    req.content_length_ = body_.size();
    req.content_provider_ = [this](size_t offset, size_t length, httplib::DataSink& sink) {
      return !cancelled_.load() && sink.write(body_.data() + offset, length);
    };
    req.response_handler = [this](const httplib::Response& res) {
      status_ = res.status;
      int64_t seconds = 0;
      if (absl::SimpleAtoi(res.get_header_value("Retry-After"), &seconds) && seconds > 0) {
        result_.retry_after = absl::Seconds(seconds);
      }
      return KeepGoing();
    };
    req.content_receiver = [this](const char* data, size_t size, uint64_t /*offset*/,
                                  uint64_t /*total*/) {
      const absl::string_view bytes(data, size);
      if (status_ == 200) {
        reader_.Feed(bytes);
        if (result_.first_token == absl::InfiniteDuration() && reader_.has_token()) {
          result_.first_token = absl::Now() - start_;
        }
      } else if (error_body_.size() < kMaxErrorBody) {
        error_body_.append(data, std::min(size, kMaxErrorBody - error_body_.size()));
      }
      return KeepGoing();
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    const bool answered = client_->send(req, res, error);
    End(answered, error);
    // `done` may destroy this call: keep what it needs on the stack.
    Done done = std::move(done_);
    done(id_, std::move(result_));
  }

  // Whether the call should go on reading: not cancelled, deadline not
  // passed.
  bool KeepGoing() {
    if (cancelled_.load()) return false;
    if (deadline_ != absl::InfiniteDuration() && absl::Now() - start_ >= deadline_) {
      timed_out_ = true;
      return false;
    }
    return true;
  }

  void Set(grpc::StatusCode code, absl::string_view name, std::string message) {
    result_.code = code;
    result_.http_status = std::string(name);
    result_.message = std::move(message);
  }

  // Fills result_ from how send() ended.
  void End(bool answered, httplib::Error error) {
    result_.latency = absl::Now() - start_;
    result_.cancelled_at_drain = cancelled_at_drain_.load();
    result_.generated_tokens = reader_.generated_tokens();
    result_.agent_tokens = reader_.agent_tokens();
    const bool timed_out =
        timed_out_ || (deadline_ != absl::InfiniteDuration() && result_.latency >= deadline_);
    if (answered && status_ != 200) {
      return Set(CodeOfHttpStatus(status_), HttpStatusName(status_),
                 ErrorBodyMessage(error_body_));
    }
    if (answered && reader_.error().has_value()) {
      return Set(grpc::StatusCode::UNKNOWN, kHttpStreamError, *reader_.error());
    }
    if (answered && reader_.done()) return Set(grpc::StatusCode::OK, HttpStatusName(200), "");
    if (answered) {
      return Set(grpc::StatusCode::UNKNOWN, kHttpStreamError,
                 "the stream ended without data: [DONE]");
    }
    // No complete answer.
    if (cancelled_.load()) {
      return Set(grpc::StatusCode::CANCELLED, kHttpCancelled, "cancelled by the load generator");
    }
    if (timed_out) {
      return Set(grpc::StatusCode::DEADLINE_EXCEEDED, kHttpTimeout,
                 absl::StrCat("no complete answer within deadline_ms=",
                              absl::ToInt64Milliseconds(deadline_)));
    }
    const std::string why = httplib::to_string(error);
    if (status_ == 200) {
      return Set(grpc::StatusCode::UNKNOWN, kHttpStreamError,
                 absl::StrCat("the stream broke before data: [DONE] (", why, ")"));
    }
    if (status_ > 0) {
      return Set(CodeOfHttpStatus(status_), HttpStatusName(status_),
                 absl::StrCat(ErrorBodyMessage(error_body_), " (body cut: ", why, ")"));
    }
    Set(grpc::StatusCode::UNAVAILABLE, kHttpConnectionError, why);
  }

  CallThreads& threads_;
  const std::unique_ptr<httplib::Client> client_;  // stop() is thread-safe
  const HttpRoute route_;
  const std::string body_;
  const std::string api_key_;
  const absl::Duration deadline_;
  const int64_t id_;
  const absl::Time run_start_;
  Done done_;
  absl::Time start_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> cancelled_at_drain_{false};
  // Touched by the call's thread only (after Start).
  CallResult result_;
  StreamReader reader_;
  int status_ = 0;  // the HTTP status, once the headers have come
  std::string error_body_;
  bool timed_out_ = false;
};

}  // namespace

std::unique_ptr<Call> NewHttpCall(CallThreads& threads, const HostPort& target, Mode mode,
                                  HttpRequest request, const CallOptions& options,
                                  Call::Done done) {
  return std::make_unique<HttpCall>(threads, target, mode, std::move(request), options,
                                    std::move(done));
}

absl::Status WaitForHttpServer(const HostPort& target, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  httplib::Client client(target.host, target.port);
  client.set_connection_timeout(ToMicros(absl::Seconds(1)));
  client.set_read_timeout(ToMicros(absl::Seconds(5)));
  while (true) {
    if (httplib::Result r = client.Get("/v1/models"); r) return absl::OkStatus();
    if (absl::Now() >= until) {
      const bool v6 = target.host.find(':') != std::string::npos;
      return absl::UnavailableError(absl::StrCat(
          "no HTTP server answers at ", v6 ? "[" : "", target.host, v6 ? "]" : "", ":",
          target.port, " (waited ", absl::FormatDuration(timeout), ")"));
    }
    absl::SleepFor(kProbeInterval);
  }
}

}  // namespace conclave::loadtest
