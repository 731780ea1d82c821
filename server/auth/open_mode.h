// Open mode: serving without API keys. Anyone who can connect may use the
// server then, so it is allowed only on a loopback address, where only this
// machine's users can connect (a developer's own laptop, tests).
// Thread-safe: pure functions.
#ifndef CONCLAVE_SERVER_AUTH_OPEN_MODE_H_
#define CONCLAVE_SERVER_AUTH_OPEN_MODE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace conclave::server::auth {

// True for a literal loopback address: IPv4 127.0.0.0/8, IPv6 ::1 (with or
// without brackets), IPv4-mapped ::ffff:127.x.x.x, and the name "localhost"
// (RFC 6761 reserves it for loopback). Any other name is false: what it
// resolves to is not known here.
bool IsLoopbackAddress(absl::string_view bind_address);

// OK when serving without keys on `bind_address` is allowed (loopback);
// else FAILED_PRECONDITION saying why and what to do.
absl::Status CheckOpenModeAllowed(absl::string_view bind_address);

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_OPEN_MODE_H_
