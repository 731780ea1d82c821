// The server's TLS certificate and private key (--tls-cert, --tls-key),
// read and checked once at startup, before anything binds, so that a
// missing, unreadable or mismatched file stops the server with a message
// naming it. Both transports serve them: gRPC through
// grpc::SslServerCredentials (the PEM text), HTTP through OpenSSL (the
// files). Thread-safe: pure functions of the files.
#ifndef CONCLAVE_SERVER_TLS_CREDENTIALS_H_
#define CONCLAVE_SERVER_TLS_CREDENTIALS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace conclave::server {

struct TlsCredentials {
  std::string cert_file;  // as given on the command line
  std::string key_file;
  std::string cert_chain_pem;   // the certificate, then any intermediates
  std::string private_key_pem;  // unencrypted
};

// Reads and checks both files: the certificate file must hold at least one
// PEM certificate, the key file an unencrypted PEM private key that matches
// the first certificate. Both paths empty: nullopt (plaintext). Errors name
// the flag and the file: INVALID_ARGUMENT when only one is given or a file
// holds no usable PEM (or the key does not match), NOT_FOUND /
// PERMISSION_DENIED when a file cannot be read. Never includes key material.
absl::StatusOr<std::optional<TlsCredentials>> LoadTlsCredentials(const std::string& cert_file,
                                                                 const std::string& key_file);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_TLS_CREDENTIALS_H_
