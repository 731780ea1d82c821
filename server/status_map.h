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

// Seconds a client turned away for the server's load is told to wait before
// it retries (docs/overload.md): a queued request starts, and so frees a
// place, every few hundred milliseconds under load; clients add their own
// backoff and jitter.
inline constexpr double kOverloadRetryAfterSeconds = 1;

// `status` with the retry-after payload (auth::RetryAfterSeconds) that every
// RESOURCE_EXHAUSTED gives its client, as gRPC's retry-after trailer or
// HTTP's Retry-After header: a quota refusal keeps its own; any other (the
// engine's queue, the request threads' limit) gets
// kOverloadRetryAfterSeconds. Other statuses are returned as they are.
absl::Status WithRetryAfter(absl::Status status);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_STATUS_MAP_H_
