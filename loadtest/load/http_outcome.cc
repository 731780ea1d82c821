#include "loadtest/load/http_outcome.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {
namespace {

// Enough of a body that is not JSON to recognise it (an HTML error page).
constexpr size_t kMaxQuotedBody = 200;

}  // namespace

std::string HttpStatusName(int status) { return absl::StrCat(status); }

grpc::StatusCode CodeOfHttpStatus(int status) {
  switch (status) {
    case 200: return grpc::StatusCode::OK;
    case 400:
    case 413: return grpc::StatusCode::INVALID_ARGUMENT;
    case 401: return grpc::StatusCode::UNAUTHENTICATED;
    case 403: return grpc::StatusCode::PERMISSION_DENIED;
    case 404: return grpc::StatusCode::NOT_FOUND;
    case 429: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 499: return grpc::StatusCode::CANCELLED;
    case 500: return grpc::StatusCode::INTERNAL;
    case 501: return grpc::StatusCode::UNIMPLEMENTED;
    case 503: return grpc::StatusCode::UNAVAILABLE;
    case 504: return grpc::StatusCode::DEADLINE_EXCEEDED;
    default: return grpc::StatusCode::UNKNOWN;
  }
}

std::string ErrorBodyMessage(absl::string_view body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    const auto error = j.find("error");
    if (error != j.end() && error->is_object()) {
      const auto message = error->find("message");
      if (message != error->end() && message->is_string()) return message->get<std::string>();
    }
  }
  if (body.empty()) return "(empty body)";
  return std::string(body.substr(0, kMaxQuotedBody));
}

}  // namespace conclave::loadtest
