#include "loadtest/load/target.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace conclave::loadtest {
namespace {

constexpr char kRule[] =
    "the load generator sends load to this machine only: localhost, 127.0.0.0/8 or [::1]";

bool IsLoopbackV4(const in_addr& a) { return (ntohl(a.s_addr) >> 24) == 127; }

bool IsLoopbackV6(const in6_addr& a) {
  if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
  if (IN6_IS_ADDR_V4MAPPED(&a)) return a.s6_addr[12] == 127;
  return false;
}

}  // namespace

absl::StatusOr<HostPort> ParseTarget(absl::string_view target) {
  const std::string shown(target);
  if (absl::StrContains(target, "://") || absl::StartsWith(target, "unix:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target=", shown, " must be HOST:PORT, without a scheme"));
  }
  HostPort hp;
  absl::string_view port;
  if (absl::StartsWith(target, "[")) {
    const size_t close = target.find(']');
    if (close == absl::string_view::npos || close + 1 >= target.size() ||
        target[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("--target=", shown, " must be [IPV6]:PORT, e.g. [::1]:50051"));
    }
    hp.host = std::string(target.substr(1, close - 1));
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == absl::string_view::npos || target.find(':') != colon) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--target=", shown, " must be HOST:PORT (an IPv6 address goes in brackets)"));
    }
    hp.host = std::string(target.substr(0, colon));
    port = target.substr(colon + 1);
  }
  if (hp.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--target=", shown, " has no host"));
  }
  if (!absl::SimpleAtoi(port, &hp.port) || hp.port < 1 || hp.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target=", shown, ": the port must be in [1, 65535]"));
  }
  return hp;
}

bool IsLoopbackLiteral(absl::string_view host) {
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return IsLoopbackV4(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IsLoopbackV6(v6);
  return false;
}

absl::Status CheckLoopbackTarget(absl::string_view target) {
  absl::StatusOr<HostPort> hp = ParseTarget(target);
  if (!hp.ok()) return hp.status();
  if (absl::AsciiStrToLower(hp->host) == "localhost" || IsLoopbackLiteral(hp->host)) {
    return absl::OkStatus();
  }
  const std::string shown(target);
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, hp->host.c_str(), &v4) == 1 ||
      inet_pton(AF_INET6, hp->host.c_str(), &v6) == 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target=", shown, " is not a loopback address; ", kRule));
  }
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(hp->host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target=", shown, ": cannot resolve ", hp->host, "; ", kRule));
  }
  bool all_loopback = true;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      all_loopback &= IsLoopbackV4(reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr);
    } else if (a->ai_family == AF_INET6) {
      all_loopback &= IsLoopbackV6(reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr);
    } else {
      all_loopback = false;
    }
  }
  freeaddrinfo(found);
  if (!all_loopback) {
    return absl::InvalidArgumentError(absl::StrCat("--target=", shown, ": ", hp->host,
                                                   " resolves to a non-loopback address; ", kRule));
  }
  return absl::OkStatus();
}

}  // namespace conclave::loadtest
