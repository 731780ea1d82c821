#include "server/status_map.h"

#include <string>

#include "server/auth/quota.h"

namespace conclave::server {
namespace {

struct CodeRow {
  absl::StatusCode absl_code;
  grpc::StatusCode grpc_code;
  int http_status;
};

// Source for the HTTP column: google/rpc/code.proto.
constexpr CodeRow kCodes[] = {
    {absl::StatusCode::kOk, grpc::StatusCode::OK, 200},
    {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED, 499},
    {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN, 500},
    {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT, 400},
    {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED, 504},
    {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND, 404},
    {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS, 409},
    {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED, 403},
    {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED, 429},
    {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION, 400},
    {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED, 409},
    {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE, 400},
    {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED, 501},
    {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL, 500},
    {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE, 503},
    {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS, 500},
    {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED, 401},
};

const CodeRow* Find(absl::StatusCode code) {
  for (const CodeRow& row : kCodes) {
    if (row.absl_code == code) return &row;
  }
  return nullptr;
}

}  // namespace

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  const CodeRow* row = Find(code);
  return row == nullptr ? grpc::StatusCode::UNKNOWN : row->grpc_code;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
}

int ToHttpStatus(absl::StatusCode code) {
  const CodeRow* row = Find(code);
  return row == nullptr ? 500 : row->http_status;
}

absl::Status WithRetryAfter(absl::Status status) {
  if (!absl::IsResourceExhausted(status) || auth::RetryAfterSeconds(status).has_value()) {
    return status;
  }
  return auth::RetryLaterError(status.message(), kOverloadRetryAfterSeconds);
}

}  // namespace conclave::server
