// conclave.v1.ContemplateRequest -> orchestrator::ContemplateOptions: the
// proto's documented defaults for absent fields (conclave.proto), lowered to
// the server's limits, and the seed the server drew when the request gives
// none. Shared by the gRPC and HTTP transports (through ContemplateJob) and
// called directly by tests and fuzz/contemplate_request_fuzz.cc. No
// transport, no engine.
// Thread-safe: a pure function.
#ifndef CONCLAVE_SERVER_CONTEMPLATE_OPTIONS_H_
#define CONCLAVE_SERVER_CONTEMPLATE_OPTIONS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "conclave/v1/conclave.pb.h"
#include "orchestrator/contemplate_options.h"
#include "server/validation.h"

namespace conclave::server {

// Defaults of absent fields, as conclave.proto documents them (agents' and
// max_tokens's: kDefaultContemplateAgents and kDefaultContemplateMaxTokens,
// validation.h).
inline constexpr float kDefaultVoteShare = 0.75f;
inline constexpr float kDefaultKeepTopPercent = 90.0f;
inline constexpr float kDefaultConfidenceEta = 90.0f;

// `request` with the defaults applied. Precondition for a runnable result:
// ValidateContemplateRequest(request, limits).ok(); then the options pass
// orchestrator::ValidateContemplateOptions(options, limits.max_agents).
// INVALID_ARGUMENT when a message is not valid (ValidateMessages).
absl::StatusOr<orchestrator::ContemplateOptions> ToContemplateOptions(
    const v1::ContemplateRequest& request, const RequestLimits& limits, uint64_t seed);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_CONTEMPLATE_OPTIONS_H_
