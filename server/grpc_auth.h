// The gRPC side of API keys: the call's `authorization` metadata goes to
// AccessControl, and a RESOURCE_EXHAUSTED with a retry-after payload
// (auth::RetryAfterSeconds) goes back as trailing metadata
// `retry-after: <whole seconds>` (rounded up, at least 1; the same value as
// HTTP's Retry-After header).
// Thread-safe: pure functions of their arguments.
#ifndef CONCLAVE_SERVER_GRPC_AUTH_H_
#define CONCLAVE_SERVER_GRPC_AUTH_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/access_control.h"

namespace conclave::server {

// The metadata key of the retry-after trailer.
inline constexpr char kRetryAfterMetadata[] = "retry-after";

// Authenticates the call by its `authorization` metadata (the first entry
// when a client sent several). AccessControl::Authenticate's errors.
absl::StatusOr<Caller> AuthenticateCall(AccessControl& access,
                                        const grpc::ServerContextBase& context);

// Adds the retry-after trailer when `status` carries a retry-after payload.
// Call before Finish.
void AddRetryAfterTrailer(grpc::ServerContextBase& context, const absl::Status& status);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_GRPC_AUTH_H_
