// The one status table: every absl code has its gRPC and HTTP counterpart.
#include "server/status_map.h"

#include "gtest/gtest.h"
#include "server/auth/quota.h"

namespace conclave::server {
namespace {

TEST(StatusMapTest, EveryAbslCodeMapsToTheGrpcCodeOfTheSameMeaning) {
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kOk), grpc::StatusCode::OK);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kCancelled), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kUnknown), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kInvalidArgument), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kDeadlineExceeded), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kNotFound), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kAlreadyExists), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kPermissionDenied), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kResourceExhausted),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kFailedPrecondition),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kAborted), grpc::StatusCode::ABORTED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kOutOfRange), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kUnimplemented), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kInternal), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kUnavailable), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kDataLoss), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kUnauthenticated), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(StatusMapTest, CodesOutsideTheTableBecomeUnknown) {
  EXPECT_EQ(ToGrpcCode(static_cast<absl::StatusCode>(1234)), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(ToHttpStatus(static_cast<absl::StatusCode>(1234)), 500);
}

TEST(StatusMapTest, KeepsTheMessage) {
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("top_p=0 must be in (0, 1]"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "top_p=0 must be in (0, 1]");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusMapTest, HttpStatusesFollowGoogleRpcCode) {
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kOk), 200);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kCancelled), 499);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(ToHttpStatus(absl::StatusCode::kDeadlineExceeded), 504);
}

TEST(StatusMapTest, EveryResourceExhaustedTellsItsClientWhenToRetry) {
  const absl::Status queue_full = WithRetryAfter(
      absl::ResourceExhaustedError("server overloaded: 8 requests queued, retry later"));
  EXPECT_EQ(queue_full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(queue_full.message(), "server overloaded: 8 requests queued, retry later");
  EXPECT_EQ(auth::RetryAfterSeconds(queue_full), kOverloadRetryAfterSeconds);
  // A quota's own retry-after stays.
  const absl::Status quota = WithRetryAfter(auth::RetryLaterError("over requests_per_minute", 7.5));
  EXPECT_EQ(auth::RetryAfterSeconds(quota), 7.5);
  // Other codes get none.
  EXPECT_FALSE(auth::RetryAfterSeconds(WithRetryAfter(absl::InvalidArgumentError("x"))));
  EXPECT_TRUE(WithRetryAfter(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace conclave::server
