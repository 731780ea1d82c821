// The one table from absl::Status codes to transport codes: gRPC status
// codes for the gRPC services and HTTP status codes for the developer
// endpoint. Every server path that turns an engine or orchestrator error into
// a transport error goes through here.
// Thread-safe: pure functions.
#ifndef CONCLAVE_SERVER_STATUS_MAP_H_
#define CONCLAVE_SERVER_STATUS_MAP_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace conclave::server {

// The gRPC code for an absl code (the two enums share their numbering, but
// the mapping is spelled out so that neither side's additions slip through
// unnoticed). Unknown codes map to UNKNOWN.
grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// `status` as a grpc::Status with the same message (OK stays OK).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The HTTP status for an absl code, as google.rpc.Code documents it
// (INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429,
// UNAVAILABLE 503, CANCELLED 499, ...).
int ToHttpStatus(absl::StatusCode code);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_STATUS_MAP_H_
