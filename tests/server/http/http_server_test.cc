// The OpenAI-compatible HTTP endpoint in-process on 127.0.0.1 (a free port)
// with the real SmolLM2 model, called by cpp-httplib clients from several
// threads at once: streamed and plain chat completions side by side, a
// streamed contemplation beside chat calls, a client that goes away
// mid-stream, shutdown with streams in flight, and malformed bodies among
// good calls. Every test ends with the engine idle and no KV block held.
// The TSan stage runs it (tests/CMakeLists.txt THREADED_TESTS): cpp-httplib
// hands connections to its workers through std::mutex and
// std::condition_variable, which TSan sees (Debian's gRPC it cannot; see
// grpc_server_test), once a few statics of the uninstrumented libraries are
// built up front (BuildLibraryStatics). Skips when the model has not been
// fetched.
#include "server/http/http_server.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "prometheus/metric_family.h"
#include "server/service_context.h"
#include "server/serving_engine.h"
#include "tests/server/test_serving_engine.h"
#include "spdlog/spdlog.h"
#include "tests/testing/paths.h"

namespace conclave::server::http {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr int kMaxAgents = 4;
constexpr char kChatPath[] = "/v1/chat/completions";
constexpr char kContemplationsPath[] = "/v1/contemplations";
// Greedy, the model counts for about 120 tokens, so a call is still running
// when the test cuts it off (tests/server/http_helpers.py's ENDLESS).
constexpr char kEndless[] = "Count from 1 to 1000, one number per line.";
constexpr int kEndlessMaxTokens = 400;
// Bounds for waits that end in well under a second in a Release build;
// generous because TSan runs the model tens of times slower on two cores.
constexpr std::chrono::seconds kCallTimeout(120);
constexpr absl::Duration kWaitTimeout = absl::Seconds(60);

// What a client got for one request.
struct Reply {
  bool completed = false;  // the whole response was read
  httplib::Error error = httplib::Error::Success;  // why not, when not
  int status = -1;         // -1: no response line (e.g. connection refused)
  std::string content_type;
  std::string body;
};

// Sends `method` `path` to 127.0.0.1:`port` on a new connection, with `body`
// as application/json unless it is empty. `on_data(body so far)` runs as the
// response body arrives; returning false drops the connection there (the
// client goes away).
Reply Send(int port, const std::string& method, const std::string& path, const std::string& body,
           const std::function<bool(const std::string&)>& on_data = nullptr) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(kCallTimeout);
  client.set_read_timeout(kCallTimeout);
  client.set_write_timeout(kCallTimeout);
  Reply reply;
  httplib::Request req;
  req.method = method;
  req.path = path;
  if (!body.empty()) req.set_header("Content-Type", "application/json");
  req.body = body;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    reply.body.append(data, n);
    return on_data == nullptr || on_data(reply.body);
  };
  httplib::Response res;
  reply.completed = client.send(req, res, reply.error);
  reply.status = res.status;
  reply.content_type = res.get_header_value("Content-Type");
  return reply;
}

Reply Post(int port, const std::string& path, const std::string& body,
           const std::function<bool(const std::string&)>& on_data = nullptr) {
  return Send(port, "POST", path, body, on_data);
}

std::string ChatBody(const std::string& question, int max_tokens, bool stream) {
  return Json{{"messages", Json::array({{{"role", "user"}, {"content", question}}})},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"stream", stream}}
      .dump();
}

// The payloads of a server-sent-event body ("data: X\n\n" each), in order.
std::vector<std::string> SseEvents(const std::string& body) {
  std::vector<std::string> events;
  for (absl::string_view event : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::ConsumePrefix(&event, "data: ")) << "not an SSE data event: " << event;
    events.emplace_back(event);
  }
  return events;
}

Json ParseJson(absl::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
  return j;
}

// What a streamed chat completion (one choice) said.
struct ChatStream {
  bool done = false;  // ended with data: [DONE]
  std::set<std::string> ids;
  std::string content;
  std::string finish_reason;  // "" when no chunk gave one
  std::optional<Json> error;  // the error event, if any
};

ChatStream ReadChatStream(const Reply& reply) {
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_TRUE(absl::StartsWith(reply.content_type, "text/event-stream")) << reply.content_type;
  ChatStream s;
  const std::vector<std::string> events = SseEvents(reply.body);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i] == "[DONE]") {
      EXPECT_EQ(i + 1, events.size()) << "an event after [DONE]";
      s.done = true;
      continue;
    }
    Json chunk = ParseJson(events[i]);
    if (chunk.is_discarded()) continue;
    if (chunk.contains("error")) {
      EXPECT_EQ(i + 2, events.size()) << "the error event is not the last before [DONE]";
      s.error = chunk["error"];
      continue;
    }
    EXPECT_EQ(chunk.value("object", ""), "chat.completion.chunk");
    s.ids.insert(chunk.value("id", ""));
    for (Json& choice : chunk["choices"]) {
      Json& delta = choice["delta"];
      if (delta.contains("content")) s.content += delta["content"].get<std::string>();
      if (!choice["finish_reason"].is_null()) {
        EXPECT_TRUE(s.finish_reason.empty()) << "a second finish_reason";
        s.finish_reason = choice["finish_reason"].get<std::string>();
      }
    }
  }
  return s;
}

// A streamed chat completion that ran to its end.
void ExpectCompleteChatStream(const Reply& reply) {
  EXPECT_TRUE(reply.completed) << httplib::to_string(reply.error);
  const ChatStream s = ReadChatStream(reply);
  EXPECT_TRUE(s.done) << reply.body;
  EXPECT_FALSE(s.error.has_value()) << s.error->dump();
  EXPECT_EQ(s.ids.size(), 1u) << "chunks of one stream carry one id";
  EXPECT_FALSE(s.content.empty()) << reply.body;
  EXPECT_THAT(s.finish_reason, ::testing::AnyOf("stop", "length"));
}

// A plain chat completion that ran to its end.
void ExpectCompleteChatCompletion(const Reply& reply) {
  EXPECT_TRUE(reply.completed) << httplib::to_string(reply.error);
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.content_type, "application/json");
  Json r = ParseJson(reply.body);
  if (r.is_discarded()) return;
  EXPECT_EQ(r.value("object", ""), "chat.completion");
  ASSERT_EQ(r["choices"].size(), 1u) << reply.body;
  EXPECT_FALSE(r["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_THAT(r["choices"][0]["finish_reason"].get<std::string>(),
              ::testing::AnyOf("stop", "length"));
}

// OpenAI's error body with HTTP 400.
void ExpectBadRequest(const Reply& reply, const std::string& message_part,
                      const std::optional<std::string>& param) {
  EXPECT_TRUE(reply.completed) << httplib::to_string(reply.error);
  EXPECT_EQ(reply.status, 400) << reply.body;
  EXPECT_EQ(reply.content_type, "application/json");
  Json body = ParseJson(reply.body);
  if (body.is_discarded()) return;
  ASSERT_TRUE(body.contains("error")) << reply.body;
  Json& error = body["error"];
  EXPECT_EQ(error.value("type", ""), "invalid_request_error");
  EXPECT_THAT(error.value("message", ""), HasSubstr(message_part));
  if (param.has_value()) {
    EXPECT_EQ(error["param"], *param) << reply.body;
  } else {
    EXPECT_TRUE(error["param"].is_null()) << reply.body;
  }
}

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = conclave::testing::DefaultModelPath();
    if (path.empty()) return;
    spdlog::default_logger_raw();  // see BuildLibraryStatics
    absl::StatusOr<std::unique_ptr<ServingEngine>> serving = LoadTestServingEngine(path, kMaxAgents);
    ASSERT_TRUE(serving.ok()) << serving.status();
    serving_ = serving->release();

    ServiceOptions service_options;
    service_options.max_agents = kMaxAgents;
    absl::StatusOr<std::unique_ptr<ServiceContext>> service =
        ServiceContext::Create(serving_->client(), serving_->info(), service_options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = service->release();

    BuildLibraryStatics();
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(*service_, Options());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
    delete server_;
    server_ = nullptr;
    if (service_ != nullptr) service_->Close();
    delete service_;
    service_ = nullptr;
    delete serving_;
    serving_ = nullptr;
  }
  void SetUp() override {
    if (serving_ == nullptr) GTEST_SKIP() << "SmolLM2 model not fetched";
  }

  static HttpServerOptions Options() {
    HttpServerOptions o;
    o.bind = "127.0.0.1";
    o.port = 0;
    o.threads = 16;
    return o;
  }

  static int port() { return server_->port(); }

  // TSan cannot see the one-time initialisation of a few process-wide
  // statics inside the uninstrumented Debian libraries the server calls:
  // C++ function-local statics whose guard the library checks inline, and
  // absl::call_once. The thread that builds one and another that reads it
  // later then look unordered (a data race on the static's contents). They
  // are spdlog's registry (built above, before the engine's threads),
  // absl's random pool (ServiceContext::DrawSeed) and cpp-httplib's request
  // method set, chunked-encoding constants and its client's and routes'
  // regex matchers. One call of each kind here, from this thread, on a
  // server whose threads are joined before the suite's server starts,
  // builds them before any thread that the tests run exists.
  static void BuildLibraryStatics() {
    service_->DrawSeed();
    absl::StatusOr<std::unique_ptr<HttpServer>> warm = HttpServer::Start(*service_, Options());
    ASSERT_TRUE(warm.ok()) << warm.status();
    const int warm_port = (*warm)->port();
    EXPECT_EQ(Send(warm_port, "GET", "/v1/models/" + serving_->info().id, "").status, 200);
    EXPECT_EQ(Post(warm_port, kChatPath, ChatBody("Hi", 1, /*stream=*/true)).status, 200);
    EXPECT_EQ(Post(warm_port, kChatPath, "{").status, 400);
    (*warm)->Shutdown(absl::Seconds(30));
  }

  // Waits (bounded) until the engine holds nothing: no request running or
  // waiting, no KV block in use; then checks it (the stats are the step
  // loop's last published snapshot).
  static void ExpectEngineIdle() {
    const auto busy = [](const engine::EngineStats& s) {
      return s.active_requests > 0 || s.running_sequences > 0 || s.waiting_sequences > 0 ||
             s.waiting_requests > 0 || s.kv.used_blocks > 0;
    };
    const absl::Time deadline = absl::Now() + kWaitTimeout;
    engine::EngineStats stats = serving_->engine().stats();
    while (busy(stats) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
      stats = serving_->engine().stats();
    }
    EXPECT_EQ(stats.active_requests, 0);
    EXPECT_EQ(stats.running_sequences, 0);
    EXPECT_EQ(stats.waiting_sequences, 0);
    EXPECT_EQ(stats.waiting_requests, 0);
    EXPECT_EQ(stats.kv.used_blocks, 0);
    EXPECT_EQ(stats.leaked_blocks, 0);
  }

  // conclave_requests_total{mode="instant", code=`code`}: chat completions
  // that ended with `code` (0 before the first; the series appears then).
  static double InstantCallsEndedWith(const std::string& code) {
    double total = 0;
    for (const prometheus::MetricFamily& f : service_->metrics().registry()->Collect()) {
      if (f.name != "conclave_requests_total") continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        int matched = 0;
        for (const prometheus::ClientMetric::Label& l : m.label) {
          matched += (l.name == "mode" && l.value == "instant") ||
                     (l.name == "code" && l.value == code);
        }
        if (matched == 2) total += m.counter.value;
      }
    }
    return total;
  }

  static ServingEngine* serving_;
  static ServiceContext* service_;
  static HttpServer* server_;
};

ServingEngine* HttpServerTest::serving_ = nullptr;
ServiceContext* HttpServerTest::service_ = nullptr;
HttpServer* HttpServerTest::server_ = nullptr;

const char* const kQuestions[] = {"Name three colors.", "What is the capital of France?",
                                  "Say hello.", "Name a fruit."};

TEST_F(HttpServerTest, ConcurrentStreamedAndPlainChatCompletionsAllComplete) {
  constexpr int kClients = 4;
  constexpr int kCallsEach = 2;
  std::vector<std::vector<Reply>> streams(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        streams[c].push_back(
            Post(port(), kChatPath, ChatBody(kQuestions[(c + i) % 4], 8, /*stream=*/true)));
      }
    });
  }
  const Reply plain = Post(port(), kChatPath, ChatBody(kQuestions[0], 8, /*stream=*/false));
  for (std::thread& t : clients) t.join();

  ExpectCompleteChatCompletion(plain);
  std::set<std::string> ids;
  for (const std::vector<Reply>& replies : streams) {
    ASSERT_EQ(replies.size(), static_cast<size_t>(kCallsEach));
    for (const Reply& r : replies) {
      ExpectCompleteChatStream(r);
      const ChatStream s = ReadChatStream(r);
      ids.insert(s.ids.begin(), s.ids.end());
    }
  }
  // Every stream its own id: no chunk went to another call's connection.
  EXPECT_EQ(ids.size(), static_cast<size_t>(kClients * kCallsEach));
  ExpectEngineIdle();
}

TEST_F(HttpServerTest, AStreamedContemplationEndsWithItsFinalAnswerBesideChatCalls) {
  const std::string contemplation =
      Json{{"messages", Json::array({{{"role", "user"}, {"content", "What is 3 + 4?"}}})},
           {"agents", 3},
           {"max_tokens", 12},
           {"seed", 5},
           {"stream", true},
           {"stream_agent_text", true}}
          .dump();
  std::vector<Reply> chats(2);
  std::vector<std::thread> clients;
  for (int c = 0; c < 2; ++c) {
    clients.emplace_back([&, c] {
      chats[c] = Post(port(), kChatPath, ChatBody(kQuestions[c], 8, /*stream=*/true));
    });
  }
  const Reply reply = Post(port(), kContemplationsPath, contemplation);
  for (std::thread& t : clients) t.join();

  for (const Reply& r : chats) ExpectCompleteChatStream(r);
  EXPECT_TRUE(reply.completed) << httplib::to_string(reply.error);
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_TRUE(absl::StartsWith(reply.content_type, "text/event-stream")) << reply.content_type;
  const std::vector<std::string> events = SseEvents(reply.body);
  ASSERT_GE(events.size(), 2u) << reply.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<std::string> kinds;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json event = ParseJson(events[i]);
    ASSERT_TRUE(event.is_object() && event.size() == 1) << events[i];
    kinds.push_back(event.begin().key());
  }
  EXPECT_EQ(kinds.back(), "final_answer") << reply.body;
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "agent_started"), 3);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "final_answer"), 1);
  EXPECT_THAT(kinds, ::testing::Contains("agent_text"));
  ExpectEngineIdle();
}

TEST_F(HttpServerTest, AClientThatGoesAwayMidStreamHasItsEngineRequestAborted) {
  const double cancelled_before = InstantCallsEndedWith("CANCELLED");
  // Goes away as soon as the first bytes of the stream arrive, with up to
  // kEndlessMaxTokens tokens still to come.
  const Reply reply =
      Post(port(), kChatPath, ChatBody(kEndless, kEndlessMaxTokens, /*stream=*/true),
           [](const std::string&) { return false; });
  EXPECT_FALSE(reply.completed);
  EXPECT_EQ(reply.error, httplib::Error::Canceled) << httplib::to_string(reply.error);
  EXPECT_EQ(reply.status, 200);
  EXPECT_THAT(reply.body, ::testing::StartsWith("data: "));

  // The server notices at its next write and cancels the call (counted as
  // CANCELLED, not run to its end); its engine request is aborted.
  const absl::Time deadline = absl::Now() + kWaitTimeout;
  while (InstantCallsEndedWith("CANCELLED") < cancelled_before + 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(InstantCallsEndedWith("CANCELLED"), cancelled_before + 1);
  ExpectEngineIdle();
}

TEST_F(HttpServerTest, ShutdownEndsTheStreamsInFlightAndLeavesTheEngineIdle) {
  // A server of its own on the suite's engine and service, so that the
  // other tests keep theirs.
  absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(*service_, Options());
  ASSERT_TRUE(started.ok()) << started.status();
  HttpServer& server = **started;
  const int server_port = server.port();

  constexpr int kStreams = 3;
  std::mutex mu;
  std::condition_variable streaming_cv;
  int streaming = 0;  // guarded by mu: streams whose first bytes arrived
  std::vector<Reply> replies(kStreams);
  std::vector<std::thread> clients;
  for (int c = 0; c < kStreams; ++c) {
    clients.emplace_back([&, c] {
      bool first = true;
      replies[c] = Post(server_port, kChatPath,
                        ChatBody(kEndless, kEndlessMaxTokens, /*stream=*/true),
                        [&](const std::string&) {
                          if (first) {
                            first = false;
                            std::lock_guard<std::mutex> lock(mu);
                            ++streaming;
                            streaming_cv.notify_all();
                          }
                          return true;
                        });
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(streaming_cv.wait_for(lock, kCallTimeout, [&] { return streaming == kStreams; }))
        << streaming << " of " << kStreams << " streams started";
  }

  const double ok_before = InstantCallsEndedWith("OK");
  const double unavailable_before = InstantCallsEndedWith("UNAVAILABLE");
  // As conclave-server on SIGTERM: stop accepting, then drain within a
  // short grace and cancel the rest.
  const absl::Time begin = absl::Now();
  server.StopAccepting();
  const Reply refused = Post(server_port, kChatPath, ChatBody("Hi", 4, /*stream=*/false));
  server.Shutdown(absl::Milliseconds(100));
  const absl::Duration took = absl::Now() - begin;
  for (std::thread& t : clients) t.join();

  EXPECT_LT(took, absl::Seconds(30));
  EXPECT_FALSE(refused.completed) << "a new call was served after StopAccepting";
  EXPECT_EQ(refused.error, httplib::Error::Connection) << httplib::to_string(refused.error);
  int cancelled = 0;
  for (const Reply& r : replies) {
    EXPECT_TRUE(r.completed) << httplib::to_string(r.error);
    const ChatStream s = ReadChatStream(r);
    EXPECT_TRUE(s.done) << "the stream was cut instead of ended: " << r.body;
    if (s.error.has_value()) {
      ++cancelled;
      // Cancelled after the grace period: the documented error event.
      EXPECT_EQ(s.error->value("type", ""), "server_error");
      EXPECT_THAT(s.error->value("message", ""), HasSubstr("shutting down"));
      EXPECT_EQ(s.finish_reason, "");
    } else {
      EXPECT_THAT(s.finish_reason, ::testing::AnyOf("stop", "length")) << r.body;
    }
  }
  // The server counted each call as its client saw it end (recorded before
  // the stream's last event is written).
  EXPECT_EQ(InstantCallsEndedWith("UNAVAILABLE") - unavailable_before, cancelled);
  EXPECT_EQ(InstantCallsEndedWith("OK") - ok_before, kStreams - cancelled);
  ExpectEngineIdle();
}

TEST_F(HttpServerTest, MalformedBodiesGet400WhileGoodCallsBesideThemSucceed) {
  struct Bad {
    const char* path;
    std::string body;
    std::string message_part;
    std::optional<std::string> param;
  };
  const std::vector<Bad> bad = {
      {kChatPath, R"({"messages": [)", "not valid JSON", std::nullopt},
      {kChatPath, R"({"messages": [{"role": "user", "content": "Hi"}], "bogus": 1})",
       "unrecognized request argument supplied: bogus", "bogus"},
      {kChatPath, "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
       "not valid UTF-8", std::nullopt},
      {kContemplationsPath, R"({"messages": [{"role": "user", "content": "2+2?"}], "agentz": 3})",
       "unrecognized field agentz", "agentz"},
  };
  constexpr int kRounds = 2;
  std::vector<std::vector<Reply>> bad_replies(bad.size());
  std::vector<std::thread> clients;
  for (size_t b = 0; b < bad.size(); ++b) {
    clients.emplace_back([&, b] {
      for (int i = 0; i < kRounds; ++i) {
        bad_replies[b].push_back(Post(port(), bad[b].path, bad[b].body));
      }
    });
  }
  Reply good_stream;
  clients.emplace_back([&] {
    good_stream = Post(port(), kChatPath, ChatBody(kQuestions[1], 8, /*stream=*/true));
  });
  const Reply good_plain = Post(port(), kChatPath, ChatBody(kQuestions[2], 8, /*stream=*/false));
  for (std::thread& t : clients) t.join();

  ExpectCompleteChatCompletion(good_plain);
  ExpectCompleteChatStream(good_stream);
  for (size_t b = 0; b < bad.size(); ++b) {
    SCOPED_TRACE(bad[b].body);
    ASSERT_EQ(bad_replies[b].size(), static_cast<size_t>(kRounds));
    for (const Reply& r : bad_replies[b]) ExpectBadRequest(r, bad[b].message_part, bad[b].param);
  }
  ExpectEngineIdle();
}

}  // namespace
}  // namespace conclave::server::http
