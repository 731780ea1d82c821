// OpenAI error bodies and the HTTP status, Retry-After, param and code of
// every absl status the server can end a call with; JSON text that never
// throws; server-sent-event framing.
#include "server/http/http_response.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/quota.h"

namespace conclave::server::http {
namespace {

using ::testing::HasSubstr;

nlohmann::json Body(const HttpError& e) { return nlohmann::json::parse(ErrorBody(e)); }

TEST(HttpResponseTest, AnErrorBodyHasOpenAisFourFieldsWithNullsForAbsentOnes) {
  const nlohmann::json body = Body(ToHttpError(absl::InvalidArgumentError("bad")));
  ASSERT_TRUE(body.contains("error"));
  const nlohmann::json& e = body["error"];
  EXPECT_EQ(e.size(), 4u);
  EXPECT_EQ(e["message"], "bad");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_TRUE(e["param"].is_null());
  EXPECT_TRUE(e["code"].is_null());
}

TEST(HttpResponseTest, ParamAndCodeRideOnTheStatus) {
  const absl::Status s =
      WithErrorCode(InvalidField("messages[1].content", "too long"), "context_length_exceeded");
  EXPECT_EQ(ParamOf(s), "messages[1].content");
  EXPECT_EQ(ErrorCodeOf(s), "context_length_exceeded");
  const HttpError e = ToHttpError(s);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.canonical, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Body(e)["error"]["param"], "messages[1].content");
  EXPECT_EQ(Body(e)["error"]["code"], "context_length_exceeded");
  EXPECT_FALSE(ParamOf(absl::InvalidArgumentError("x")).has_value());
}

TEST(HttpResponseTest, MapsStatusCodesThroughTheServersTable) {
  struct Case {
    absl::Status status;
    int http;
    const char* type;
  };
  for (const Case& c : {
           Case{absl::InvalidArgumentError("x"), 400, "invalid_request_error"},
           Case{absl::UnauthenticatedError("x"), 401, "authentication_error"},
           Case{absl::PermissionDeniedError("x"), 403, "permission_error"},
           Case{absl::NotFoundError("x"), 404, "not_found_error"},
           Case{absl::ResourceExhaustedError("x"), 429, "rate_limit_error"},
           Case{absl::InternalError("x"), 500, "server_error"},
           Case{absl::UnavailableError("x"), 503, "server_error"},
       }) {
    const HttpError e = ToHttpError(c.status);
    EXPECT_EQ(e.status, c.http) << c.status;
    EXPECT_EQ(e.type, c.type) << c.status;
  }
  EXPECT_EQ(ToHttpError(absl::UnauthenticatedError("x")).code, "invalid_api_key");
}

TEST(HttpResponseTest, ResourceExhaustedCarriesRetryAfterInWholeSeconds) {
  const HttpError quota = ToHttpError(auth::RetryLaterError("over requests_per_minute", 2.2));
  EXPECT_EQ(quota.status, 429);
  EXPECT_EQ(quota.retry_after_seconds, 3);  // rounded up
  EXPECT_EQ(quota.code, "rate_limit_exceeded");
  // The server's own limits (request threads, the engine's queue) give one too.
  EXPECT_EQ(ToHttpError(absl::ResourceExhaustedError("busy")).retry_after_seconds, 1);
  EXPECT_FALSE(ToHttpError(absl::InvalidArgumentError("x")).retry_after_seconds.has_value());
}

TEST(HttpResponseTest, ErrorsTheHttpLayerMakesKeepTheirStatus) {
  const HttpError e =
      MakeHttpError(413, absl::StatusCode::kInvalidArgument, "too big", "request_too_large");
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_EQ(Body(e)["error"]["code"], "request_too_large");
  EXPECT_EQ(ErrorType(405), std::string("invalid_request_error"));
  EXPECT_EQ(ErrorType(415), std::string("invalid_request_error"));
}

TEST(HttpResponseTest, DumpingNeverThrowsOnBytesThatAreNotUtf8) {
  const nlohmann::json j = {{"text", std::string("a\xff"
                                                 "b")}};
  EXPECT_EQ(DumpJson(j),
            "{\"text\":\"a\xEF\xBF\xBD"
            "b\"}");
  EXPECT_EQ(DumpJson(nlohmann::json{{"t", "h\xC3\xA9"}}), "{\"t\":\"h\xC3\xA9\"}");  // é kept
}

TEST(HttpResponseTest, FramesServerSentEvents) {
  EXPECT_EQ(SseData("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
}

}  // namespace
}  // namespace conclave::server::http
