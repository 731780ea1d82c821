#include "server/host_port.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace conclave::server {

std::string HostPort(const std::string& host, int port) {
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace conclave::server
