#include "server/http/endpoint.h"

#include "httplib.h"

namespace conclave::server::http {

std::optional<std::string> AuthorizationOf(const httplib::Request& req) {
  if (!req.has_header("Authorization")) return std::nullopt;
  return req.get_header_value("Authorization");
}

HttpError ShuttingDownError() {
  return ToHttpError(absl::UnavailableError("the server is shutting down"));
}

int64_t UnixSeconds(absl::Time t) { return absl::ToUnixSeconds(t); }

}  // namespace conclave::server::http
