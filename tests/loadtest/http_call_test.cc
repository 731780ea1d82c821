// One HTTP call against a fake endpoint on 127.0.0.1 (cpp-httplib's
// server, canned answers): how each end is named and coded, Retry-After,
// tokens and time to first token, the deadline, and Cancel both while the
// call waits for its answer and before it has written its request.
#include "loadtest/load/http_call.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "loadtest/load/http_outcome.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {
namespace {

using ::testing::HasSubstr;

constexpr auto kCallTimeout = std::chrono::seconds(30);

std::string Sse(const std::string& data) { return "data: " + data + "\n\n"; }

// A chat-completions route whose answer each test sets; without a handler
// it answers nothing until the endpoint is destroyed.
class FakeEndpoint {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  explicit FakeEndpoint(Handler handler = {}) : handler_(std::move(handler)) {
    server_.Post("/v1/chat/completions",
                  [this](const httplib::Request& req, httplib::Response& res) {
                    {
                      std::lock_guard<std::mutex> lock(mu_);
                      ++handled_;
                      last_request_ = req;
                    }
                    entered_.notify_all();
                    if (handler_) {
                      handler_(req, res);
                    } else {
                      Hold();
                    }
                  });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // Server::stop reaches only a running accept loop: wait (bounded) for
    // it, so that the destructor never waits on an accept for ever.
    const auto until = std::chrono::steady_clock::now() + kCallTimeout;
    while (!server_.is_running() && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    EXPECT_TRUE(server_.is_running());
  }

  ~FakeEndpoint() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    release_.notify_all();
    server_.stop();
    thread_.join();
  }

  HostPort target() const { return {"127.0.0.1", port_}; }

  // Waits (bounded) until a handler has run.
  bool WaitForRequest() {
    std::unique_lock<std::mutex> lock(mu_);
    return entered_.wait_for(lock, kCallTimeout, [&] { return handled_ > 0; });
  }

  int handled() {
    std::lock_guard<std::mutex> lock(mu_);
    return handled_;
  }

  httplib::Request last_request() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_request_;
  }

 private:
  // Blocks a handler until the endpoint is destroyed.
  void Hold() {
    std::unique_lock<std::mutex> lock(mu_);
    release_.wait(lock, [&] { return released_; });
  }

  const Handler handler_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;  // guards the fields below
  std::condition_variable entered_;
  std::condition_variable release_;
  int handled_ = 0;
  httplib::Request last_request_;
  bool released_ = false;
};

HttpRequest Chat() {
  return {HttpRoute::kChatCompletions, R"({"messages": [{"role": "user", "content": "hi"}]})"};
}

// Runs one call to `target`; `before_start` and `after_start` get the call.
CallResult RunCall(const HostPort& target, CallOptions options,
                   const std::function<void(Call&)>& before_start = {},
                   const std::function<void(Call&)>& after_start = {}) {
  CallThreads threads;
  std::promise<CallResult> ended;
  std::future<CallResult> result = ended.get_future();
  options.run_start = absl::Now();
  std::unique_ptr<Call> call =
      NewHttpCall(threads, target, Mode::kInstant, Chat(), options,
                  [&ended](int64_t, CallResult r) { ended.set_value(std::move(r)); });
  if (before_start) before_start(*call);
  call->Start();
  if (after_start) after_start(*call);
  EXPECT_EQ(result.wait_for(kCallTimeout), std::future_status::ready) << "the call never ended";
  threads.JoinAll();
  return result.get();
}

TEST(HttpCallTest, AStreamEndingWithDoneIsOkWithTokensAndFirstToken) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response& res) {
    res.set_content(Sse(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})") +
                        Sse(R"({"choices":[{"delta":{"content":"Hello"}}]})") +
                        Sse(R"({"choices":[],"usage":{"completion_tokens":5}})") + Sse("[DONE]"),
                    "text/event-stream");
  });
  CallOptions options;
  options.api_key = "sk-test";
  const CallResult r = RunCall(endpoint.target(), options);
  EXPECT_EQ(r.code, grpc::StatusCode::OK) << r.message;
  EXPECT_EQ(r.http_status, "200");
  EXPECT_EQ(r.generated_tokens, 5);
  EXPECT_NE(r.first_token, absl::InfiniteDuration());
  EXPECT_LE(r.first_token, r.latency);
  const httplib::Request req = endpoint.last_request();
  EXPECT_EQ(req.get_header_value("Authorization"), "Bearer sk-test");
  EXPECT_EQ(req.get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(req.body)["messages"][0]["content"], "hi");
}

TEST(HttpCallTest, ARefusalCarriesItsStatusMessageAndRetryAfter) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response& res) {
    res.status = 429;
    res.set_header("Retry-After", "2");
    res.set_content(R"({"error": {"message": "server overloaded: 1 requests queued, retry later",)"
                    R"( "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})",
                    "application/json");
  });
  const CallResult r = RunCall(endpoint.target(), CallOptions());
  EXPECT_EQ(r.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.http_status, "429");
  EXPECT_EQ(r.message, "server overloaded: 1 requests queued, retry later");
  EXPECT_EQ(r.retry_after, absl::Seconds(2));
  EXPECT_EQ(r.first_token, absl::InfiniteDuration());
}

TEST(HttpCallTest, AnErrorEventAfterTheHeadersIsAStreamErrorNotOk) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response& res) {
    res.set_content(Sse(R"({"choices":[{"delta":{"content":"Hel"}}]})") +
                        Sse(R"({"error":{"message":"the server is shutting down",)"
                            R"("type":"server_error","param":null,"code":null}})") +
                        Sse("[DONE]"),
                    "text/event-stream");
  });
  const CallResult r = RunCall(endpoint.target(), CallOptions());
  EXPECT_NE(r.code, grpc::StatusCode::OK);
  EXPECT_EQ(r.http_status, kHttpStreamError);
  EXPECT_EQ(r.message, "server_error: the server is shutting down");
}

TEST(HttpCallTest, AStreamWithoutDoneIsAStreamError) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response& res) {
    res.set_content(Sse(R"({"choices":[{"delta":{"content":"Hel"}}]})"), "text/event-stream");
  });
  const CallResult r = RunCall(endpoint.target(), CallOptions());
  EXPECT_EQ(r.http_status, kHttpStreamError);
  EXPECT_THAT(r.message, HasSubstr("without data: [DONE]"));
}

TEST(HttpCallTest, TheDeadlineEndsACallThatGetsNoAnswer) {
  FakeEndpoint holding;
  CallOptions options;
  options.deadline = absl::Milliseconds(200);
  const CallResult r = RunCall(holding.target(), options);
  EXPECT_EQ(r.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(r.http_status, kHttpTimeout);
  EXPECT_THAT(r.message, HasSubstr("deadline_ms=200"));
  EXPECT_GE(r.latency, absl::Milliseconds(200));
  EXPECT_LT(r.latency, absl::Seconds(10));  // the read timeout is the deadline
}

TEST(HttpCallTest, CancelEndsACallWaitingForItsAnswer) {
  FakeEndpoint holding;
  const CallResult r = RunCall(holding.target(), CallOptions(), {}, [&](Call& call) {
    ASSERT_TRUE(holding.WaitForRequest());
    call.Cancel(/*at_drain=*/true);
  });
  EXPECT_EQ(r.code, grpc::StatusCode::CANCELLED);
  EXPECT_EQ(r.http_status, kHttpCancelled);
  EXPECT_TRUE(r.cancelled_at_drain);
}

TEST(HttpCallTest, CancelBeforeTheRequestIsWrittenStopsItThere) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response& res) {
    res.set_content(Sse("[DONE]"), "text/event-stream");
  });
  const CallResult r = RunCall(endpoint.target(), CallOptions(),
                               [](Call& call) { call.Cancel(/*at_drain=*/false); });
  EXPECT_EQ(r.http_status, kHttpCancelled);
  EXPECT_FALSE(r.cancelled_at_drain);
  EXPECT_EQ(endpoint.handled(), 0);  // the body was never sent
}

// A loopback port bound but not listening: connecting is refused.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  HostPort target() const { return {"127.0.0.1", port_}; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(HttpCallTest, NoServerIsAConnectionError) {
  RefusingPort port;
  const CallResult r = RunCall(port.target(), CallOptions());
  EXPECT_EQ(r.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(r.http_status, kHttpConnectionError);
  EXPECT_FALSE(r.message.empty());
}

TEST(HttpCallTest, WaitForHttpServerTakesAnyAnswerAndNamesATargetWithNone) {
  FakeEndpoint endpoint([](const httplib::Request&, httplib::Response&) {});
  // GET /v1/models is a 404 here: an answer all the same.
  EXPECT_TRUE(WaitForHttpServer(endpoint.target(), absl::Seconds(10)).ok());
  RefusingPort port;
  const absl::Status s = WaitForHttpServer(port.target(), absl::Milliseconds(300));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no HTTP server answers at 127.0.0.1:"));
}

}  // namespace
}  // namespace conclave::loadtest
