#include "server/http/json_body.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/validation.h"

namespace conclave::server::http {

int JsonNesting(absl::string_view body) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '{':
      case '[': deepest = std::max(deepest, ++depth); break;
      case '}':
      case ']': --depth; break;
      default: break;
    }
  }
  return deepest;
}

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view body, int max_depth) {
  if (const size_t bad = FindInvalidUtf8(body); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid UTF-8 (byte ", bad, ")"));
  }
  if (const int depth = JsonNesting(body); depth > max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body nests JSON ", depth, " levels deep; at most ", max_depth));
  }
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() quotes the body ("last read: ..."): only its offset is kept.
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid JSON (error at byte ", e.byte, ")"));
  } catch (const nlohmann::json::exception& e) {
    // A number beyond double's range (out_of_range.406), say.
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid JSON (",
                     e.id == 406 ? "a number is out of range" : "unreadable", ")"));
  }
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body must be a JSON object, not ", value.type_name()));
  }
  return value;
}

}  // namespace conclave::server::http
