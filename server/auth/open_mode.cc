#include "server/auth/open_mode.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace conclave::server::auth {

bool IsLoopbackAddress(absl::string_view bind_address) {
  absl::string_view address = absl::StripAsciiWhitespace(bind_address);
  if (absl::EqualsIgnoreCase(address, "localhost")) return true;
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  const std::string text(address);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::Status CheckOpenModeAllowed(absl::string_view bind_address) {
  if (IsLoopbackAddress(bind_address)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "serving without API keys (open mode) is allowed only on a loopback address "
      "(127.0.0.1, ::1, localhost), and \"",
      bind_address,
      "\" is not one: give the server a key store (conclave keys issue --store FILE ...) or "
      "bind to 127.0.0.1"));
}

}  // namespace conclave::server::auth
