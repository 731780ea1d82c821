#include "server/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace conclave::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message = absl::StrCat("cannot read ", flag, " ", path, ": ", strerror(err));
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::InvalidArgumentError(message);
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", flag, " ", path));
  }
  return contents.str();
}

// Never prompts for a passphrase (OpenSSL's default callback reads the
// terminal): an encrypted key is refused instead.
int NoPassphrase(char*, int, int, void*) { return -1; }

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

absl::StatusOr<std::optional<TlsCredentials>> LoadTlsCredentials(const std::string& cert_file,
                                                                 const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return std::optional<TlsCredentials>();
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError(
        cert_file.empty() ? "--tls-key needs --tls-cert (give both, or neither for plaintext)"
                          : "--tls-cert needs --tls-key (give both, or neither for plaintext)");
  }
  TlsCredentials c;
  c.cert_file = cert_file;
  c.key_file = key_file;
  absl::StatusOr<std::string> cert = ReadFile(cert_file, "--tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile(key_file, "--tls-key");
  if (!key.ok()) return key.status();
  c.cert_chain_pem = *std::move(cert);
  c.private_key_pem = *std::move(key);

  std::unique_ptr<X509, X509Free> x509(
      PEM_read_bio_X509(MemoryBio(c.cert_chain_pem).get(), nullptr, NoPassphrase, nullptr));
  if (x509 == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", cert_file, " holds no PEM certificate"));
  }
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      PEM_read_bio_PrivateKey(MemoryBio(c.private_key_pem).get(), nullptr, NoPassphrase, nullptr));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_file, " holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", key_file, " does not match the certificate in --tls-cert ", cert_file));
  }
  return std::optional<TlsCredentials>(std::move(c));
}

}  // namespace conclave::server
