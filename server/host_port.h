// "host:port" as a client dials an address the server listens on.
// Thread-safe: a pure function.
#ifndef CONCLAVE_SERVER_HOST_PORT_H_
#define CONCLAVE_SERVER_HOST_PORT_H_

#include <string>

namespace conclave::server {

// IPv6 literals get brackets ("[::1]:8080").
std::string HostPort(const std::string& host, int port);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_HOST_PORT_H_
