// How the report names an HTTP call's end, the gRPC code it stands for
// (429 is the overload refusal), and the message taken from an error body.
#include "loadtest/load/http_outcome.h"

#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

TEST(HttpOutcomeTest, StatusesAreNamedByTheirNumber) {
  EXPECT_EQ(HttpStatusName(200), "200");
  EXPECT_EQ(HttpStatusName(429), "429");
  EXPECT_EQ(HttpStatusName(503), "503");
}

TEST(HttpOutcomeTest, CodesMirrorTheServersTable) {
  EXPECT_EQ(CodeOfHttpStatus(200), grpc::StatusCode::OK);
  EXPECT_EQ(CodeOfHttpStatus(429), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(CodeOfHttpStatus(400), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CodeOfHttpStatus(413), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CodeOfHttpStatus(401), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CodeOfHttpStatus(403), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CodeOfHttpStatus(404), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CodeOfHttpStatus(499), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(CodeOfHttpStatus(500), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(CodeOfHttpStatus(503), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CodeOfHttpStatus(504), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Not OK merely for being 2xx: the endpoint answers a call with 200 only.
  EXPECT_EQ(CodeOfHttpStatus(204), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(CodeOfHttpStatus(418), grpc::StatusCode::UNKNOWN);
}

TEST(HttpOutcomeTest, TheMessageOfAnOpenAiErrorBodyElseTheBodyItself) {
  EXPECT_EQ(ErrorBodyMessage(R"({"error": {"message": "server overloaded: 1 requests queued, )"
                             R"(retry later", "type": "rate_limit_error", "param": null,)"
                             R"( "code": "rate_limit_exceeded"}})"),
            "server overloaded: 1 requests queued, retry later");
  EXPECT_EQ(ErrorBodyMessage("<html>502 Bad Gateway</html>"), "<html>502 Bad Gateway</html>");
  EXPECT_EQ(ErrorBodyMessage(R"({"error": "flat"})"), R"({"error": "flat"})");
  EXPECT_EQ(ErrorBodyMessage(""), "(empty body)");
  EXPECT_EQ(ErrorBodyMessage(std::string(1000, 'x')).size(), 200u);
}

}  // namespace
}  // namespace conclave::loadtest
