// Where the load generator may send load: this machine only. A load run
// against someone else's server is an attack, so --target must be a
// loopback address: "localhost", an IPv4 address in 127.0.0.0/8, "::1"
// (bracketed with a port: "[::1]:50051"), or a host name every address of
// which resolves into those.
// Thread-safe: pure functions (CheckLoopbackTarget resolves names).
#ifndef CONCLAVE_LOADTEST_LOAD_TARGET_H_
#define CONCLAVE_LOADTEST_LOAD_TARGET_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace conclave::loadtest {

struct HostPort {
  std::string host;  // without brackets
  int port = 0;
};

// Splits "HOST:PORT" or "[V6]:PORT"; the port must be in [1, 65535].
// INVALID_ARGUMENT otherwise (no scheme such as "dns:///" or "unix:").
absl::StatusOr<HostPort> ParseTarget(absl::string_view target);

// Whether `host` is a loopback address literal (127.0.0.0/8, ::1, or
// ::ffff:127.x.y.z), without resolving anything.
bool IsLoopbackLiteral(absl::string_view host);

// OK when `target` parses and its host is "localhost", a loopback literal,
// or a name whose addresses are all loopback (resolved with getaddrinfo).
// INVALID_ARGUMENT naming the target and the rule otherwise.
absl::Status CheckLoopbackTarget(absl::string_view target);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_TARGET_H_
