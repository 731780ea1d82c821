// Server-sent events as the HTTP endpoint sends them: framing across any
// split of the bytes, and what each chat chunk or contemplation event means
// for time to first token, tokens and errors.
#include "loadtest/load/http_stream.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SseParserTest, AnEventEndsAtABlankLineWhateverTheSplit) {
  const std::string stream = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser parser;
    std::vector<std::string> events = parser.Feed(stream.substr(0, cut));
    for (std::string& e : parser.Feed(stream.substr(cut))) events.push_back(std::move(e));
    EXPECT_THAT(events, ElementsAre("{\"a\":1}", "[DONE]")) << "cut at " << cut;
  }
}

TEST(SseParserTest, ByteByByteWithCrLfCommentsAndOtherFields) {
  const std::string stream =
      ": keep-alive\r\nevent: message\r\nid: 7\r\ndata:{\"x\":2}\r\n\r\n\r\ndata: y\r\n\r\n";
  SseParser parser;
  std::vector<std::string> events;
  for (char c : stream) {
    for (std::string& e : parser.Feed(std::string(1, c))) events.push_back(std::move(e));
  }
  EXPECT_THAT(events, ElementsAre("{\"x\":2}", "y"));
}

TEST(SseParserTest, DataLinesOfOneEventAreJoinedAndAnUnfinishedEventWaits) {
  SseParser parser;
  EXPECT_THAT(parser.Feed("data: one\ndata:  two\n"), IsEmpty());
  EXPECT_THAT(parser.Feed("\n"), ElementsAre("one\n two"));
  EXPECT_THAT(parser.Feed("data: cut"), IsEmpty());
}

std::string Sse(const std::string& data) { return "data: " + data + "\n\n"; }

TEST(StreamReaderTest, ChatTokenIsTheFirstNonEmptyContentAndUsageGivesTokens) {
  StreamReader reader(HttpRoute::kChatCompletions);
  reader.Feed(Sse(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],)"
                  R"("usage":null})"));
  EXPECT_FALSE(reader.has_token());
  reader.Feed(Sse(R"({"choices":[{"index":0,"delta":{"content":"4"}}],"usage":null})"));
  EXPECT_TRUE(reader.has_token());
  reader.Feed(Sse(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"));
  EXPECT_FALSE(reader.done());
  reader.Feed(Sse(R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5}})"));
  EXPECT_EQ(reader.generated_tokens(), 5);
  EXPECT_FALSE(reader.done());
  reader.Feed(Sse("[DONE]"));
  EXPECT_TRUE(reader.done());
  EXPECT_FALSE(reader.error().has_value());
  EXPECT_EQ(reader.agent_tokens(), 0);
}

TEST(StreamReaderTest, ContemplationTokenIsAgentTextOrTheFinalAnswerNotAgentStarted) {
  StreamReader reader(HttpRoute::kContemplations);
  reader.Feed(Sse(R"({"agent_started":{"agent":0,"temperature":0.8}})"));
  reader.Feed(Sse(R"({"agent_text":{"agent":0,"text":""}})"));
  EXPECT_FALSE(reader.has_token());
  reader.Feed(Sse(R"({"agent_text":{"agent":1,"text":"17"}})"));
  EXPECT_TRUE(reader.has_token());

  StreamReader quiet(HttpRoute::kContemplations);  // no agent text streamed
  quiet.Feed(Sse(R"({"agent_finished":{"agent":0,"tokens":12}})"));
  EXPECT_FALSE(quiet.has_token());
  quiet.Feed(Sse(R"({"final_answer":{"answer":"391","usage":{"generated_tokens":40,)"
                 R"("agent_tokens":"33"}}})"));
  EXPECT_TRUE(quiet.has_token());
  EXPECT_EQ(quiet.generated_tokens(), 40);
  EXPECT_EQ(quiet.agent_tokens(), 33);  // protobuf may print integers as strings
}

TEST(StreamReaderTest, AnErrorEventAfterTheHeadersMakesTheCallAnError) {
  StreamReader reader(HttpRoute::kContemplations);
  reader.Feed(Sse(R"({"agent_text":{"agent":0,"text":"x"}})"));
  reader.Feed(Sse(R"({"error":{"message":"the server is shutting down","type":"server_error",)"
                  R"("param":null,"code":null}})"));
  reader.Feed(Sse(R"({"error":{"message":"second","type":"server_error"}})"));
  reader.Feed(Sse("[DONE]"));
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(reader.error(), "server_error: the server is shutting down");

  StreamReader chat(HttpRoute::kChatCompletions);
  chat.Feed(Sse(R"({"error":{"message":"server overloaded","type":"rate_limit_error",)"
                R"("code":"rate_limit_exceeded"}})"));
  EXPECT_EQ(chat.error(), "rate_limit_error (rate_limit_exceeded): server overloaded");
}

TEST(StreamReaderTest, AnEventThatIsNotAJsonObjectIsAnError) {
  StreamReader reader(HttpRoute::kChatCompletions);
  reader.Feed(Sse("not json"));
  ASSERT_TRUE(reader.error().has_value());
  EXPECT_THAT(*reader.error(), ::testing::HasSubstr("not a JSON object: not json"));
}

TEST(StreamReaderTest, NothingAfterDoneCounts) {
  StreamReader reader(HttpRoute::kChatCompletions);
  reader.Feed(Sse("[DONE]") + Sse(R"({"choices":[{"delta":{"content":"late"}}]})") +
              Sse(R"({"error":{"message":"late","type":"server_error"}})"));
  EXPECT_TRUE(reader.done());
  EXPECT_FALSE(reader.has_token());
  EXPECT_FALSE(reader.error().has_value());
}

}  // namespace
}  // namespace conclave::loadtest
