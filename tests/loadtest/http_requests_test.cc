// The HTTP bodies carry what the gRPC requests carry: a streamed chat
// completion that asks for usage, and the very ContemplateRequest in
// protobuf's JSON mapping plus "stream": true.
#include "loadtest/load/http_requests.h"

#include <cstdint>
#include <string>

#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {
namespace {

using Json = nlohmann::json;

RequestShape Shape() {
  RequestShape shape;
  shape.agents = 3;
  shape.max_tokens = 24;
  shape.thinking_budget = 8;
  shape.stream_agent_text = true;
  return shape;
}

TEST(HttpRequestsTest, InstantIsAStreamedChatCompletionWithUsage) {
  const WorkItem item{Mode::kInstant, 0, 42};
  const HttpRequest r = MakeHttpRequest(item, "What is 2 + 2?", Shape());
  EXPECT_EQ(r.route, HttpRoute::kChatCompletions);
  EXPECT_STREQ(HttpRoutePath(r.route), "/v1/chat/completions");
  const Json body = Json::parse(r.body);
  EXPECT_EQ(body, Json::parse(R"({"messages": [{"role": "user", "content": "What is 2 + 2?"}],
                                  "max_tokens": 24, "seed": 42, "stream": true,
                                  "stream_options": {"include_usage": true}})"));
}

TEST(HttpRequestsTest, SeedsBeyondInt64AreSentAsOpenAisSignedSeed) {
  const WorkItem item{Mode::kInstant, 0, UINT64_MAX};
  const Json body = Json::parse(MakeHttpRequest(item, "q", Shape()).body);
  EXPECT_EQ(body["seed"].get<int64_t>(), -1);  // the server wraps it back to UINT64_MAX
}

TEST(HttpRequestsTest, ContemplateIsTheGrpcRequestAsJsonPlusStream) {
  const WorkItem item{Mode::kContemplate, 0, (uint64_t{1} << 60) + 7};
  const HttpRequest r = MakeHttpRequest(item, "What is 17 * 23?", Shape());
  EXPECT_EQ(r.route, HttpRoute::kContemplations);
  EXPECT_STREQ(HttpRoutePath(r.route), "/v1/contemplations");
  Json body = Json::parse(r.body);
  EXPECT_EQ(body["stream"], true);
  body.erase("stream");
  v1::ContemplateRequest parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(body.dump(), &parsed).ok()) << r.body;
  const v1::ContemplateRequest expected = MakeContemplateRequest(item, "What is 17 * 23?", Shape());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, expected))
      << parsed.DebugString() << " vs " << expected.DebugString();
  EXPECT_EQ(parsed.agents(), 3);
  EXPECT_EQ(parsed.seed(), (uint64_t{1} << 60) + 7);
  EXPECT_TRUE(parsed.stream_agent_text());
}

TEST(HttpRequestsTest, ThinkingHasNoRoute) {
  EXPECT_TRUE(HasHttpRoute(Mode::kInstant));
  EXPECT_TRUE(HasHttpRoute(Mode::kContemplate));
  EXPECT_FALSE(HasHttpRoute(Mode::kThinking));
  const WorkItem item{Mode::kThinking, 0, 1};
  EXPECT_DEATH(MakeHttpRequest(item, "q", Shape()), "thinking has no HTTP route");
}

}  // namespace
}  // namespace conclave::loadtest
