// A request body as a JSON object, or INVALID_ARGUMENT saying what is wrong
// with it: not UTF-8 (with the byte offset), nested deeper than a limit,
// not JSON (with the byte offset), not an object. Messages never quote the
// body, which may hold prompt text (they go to the logs).
// Thread-safe: pure functions.
#ifndef CONCLAVE_SERVER_HTTP_JSON_BODY_H_
#define CONCLAVE_SERVER_HTTP_JSON_BODY_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace conclave::server::http {

// The JSON nesting (objects and arrays) of `body` at its deepest, counting
// brackets outside strings; the body need not be valid JSON.
int JsonNesting(absl::string_view body);

// Parses `body`, which must be UTF-8 JSON whose top level is an object, at
// most `max_depth` deep (checked before parsing, so a hostile body cannot
// make the parser recurse).
absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view body, int max_depth);

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_JSON_BODY_H_
