#include "server/http/http_server.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "httplib.h"
#include "server/host_port.h"
#include "server/http/http_response.h"
#include "spdlog/spdlog.h"

namespace conclave::server::http {
namespace {

// A slow reader may stall a stream this long before its write fails and
// the call is cancelled; request bodies may pause this long between bytes.
constexpr int kWriteTimeoutSeconds = 30;
constexpr int kReadTimeoutSeconds = 30;
// Of a body that turned out too large, at most this much more is read (and
// dropped) so that the client, still sending, reads the 413 instead of a
// connection reset.
constexpr int64_t kDrainBytes = 4 << 20;
// Longest path echoed in a 404 or 405 message.
constexpr size_t kMaxEchoedPath = 200;

enum class Path { kNone, kChatCompletions, kContemplations, kModels, kModel };

constexpr absl::string_view kModelPrefix = "/v1/models/";

Path PathOf(const std::string& path) {
  if (path == "/v1/chat/completions") return Path::kChatCompletions;
  if (path == "/v1/contemplations") return Path::kContemplations;
  if (path == "/v1/models") return Path::kModels;
  if (absl::StartsWith(path, kModelPrefix) && path.size() > kModelPrefix.size()) {
    return Path::kModel;
  }
  return Path::kNone;
}

bool IsPost(Path p) { return p == Path::kChatCompletions || p == Path::kContemplations; }

std::string Echoed(const std::string& path) {
  return path.size() <= kMaxEchoedPath ? path : path.substr(0, kMaxEchoedPath) + "...";
}

// The Content-Length the request declares, if it declares a valid one.
std::optional<int64_t> ContentLength(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return std::nullopt;
  int64_t n = 0;
  if (!absl::SimpleAtoi(req.get_header_value("Content-Length"), &n) || n < 0) return std::nullopt;
  return n;
}

HttpError TooLarge(int64_t max_body_bytes) {
  return MakeHttpError(413, absl::StatusCode::kInvalidArgument,
                       absl::StrCat("the request body is larger than this server's limit of ",
                                    max_body_bytes, " bytes (--http-max-body-bytes)"),
                       "request_too_large");
}

// The media type of Content-Type, lower case, without parameters
// ("application/json; charset=utf-8" -> "application/json").
std::string MediaType(const httplib::Request& req) {
  const std::string value = req.get_header_value("Content-Type");
  const absl::string_view type = absl::string_view(value).substr(0, value.find(';'));
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(type));
}

// The body of a POST, within the limits (see BodyReader).
std::optional<HttpError> ReadBody(const httplib::Request& req, const httplib::ContentReader& reader,
                                  int64_t max_body_bytes, std::string* body) {
  if (const std::string type = MediaType(req); type != "application/json") {
    return MakeHttpError(
        415, absl::StatusCode::kInvalidArgument,
        absl::StrCat("Content-Type must be application/json, not ", type.empty()        ? "(none)"
                                                                    : type.size() <= 64 ? type
                                                                                        : "(long)"),
        "unsupported_media_type");
  }
  int64_t allowed = max_body_bytes;
  const std::optional<int64_t> declared = ContentLength(req);
  if (declared.has_value() && *declared > max_body_bytes) allowed = -1;  // read only to drain
  bool too_large = allowed < 0;
  int64_t drained = 0;
  const bool read = reader([&](const char* data, size_t n) {
    if (!too_large && static_cast<int64_t>(body->size() + n) <= allowed) {
      body->append(data, n);
      return true;
    }
    too_large = true;
    body->clear();
    drained += static_cast<int64_t>(n);
    return drained <= kDrainBytes;
  });
  if (too_large) return TooLarge(max_body_bytes);
  if (!read) {
    return MakeHttpError(400, absl::StatusCode::kInvalidArgument,
                         "the request body could not be read (cut short, or a bad chunked or "
                         "compressed encoding)");
  }
  return std::nullopt;
}

// The body of an error the library made itself (it leaves the body empty).
HttpError LibraryError(int status) {
  switch (status) {
    case 404:
      return MakeHttpError(404, absl::StatusCode::kNotFound, "unknown request URL", "unknown_url");
    case 414:
      return MakeHttpError(414, absl::StatusCode::kInvalidArgument, "the request URI is too long");
    default:
      return MakeHttpError(
          status, status >= 500 ? absl::StatusCode::kInternal : absl::StatusCode::kInvalidArgument,
          absl::StrCat("the HTTP request could not be served (HTTP ", status, ")"));
  }
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// Loads the checked PEM certificate chain and key into `ctx`: TLS 1.2 or
// later, no compression.
bool SetUpTls(SSL_CTX& ctx, const TlsCredentials& tls) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION);
  std::unique_ptr<BIO, BioFree> certs(
      BIO_new_mem_buf(tls.cert_chain_pem.data(), static_cast<int>(tls.cert_chain_pem.size())));
  std::unique_ptr<X509, X509Free> leaf(PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr || SSL_CTX_use_certificate(&ctx, leaf.get()) != 1) return false;
  // The rest of the file: intermediates, sent along with the leaf.
  while (X509* extra = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add_extra_chain_cert(&ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      return false;
    }
  }
  ERR_clear_error();  // the end of the file reads as an error
  std::unique_ptr<BIO, BioFree> key_bio(
      BIO_new_mem_buf(tls.private_key_pem.data(), static_cast<int>(tls.private_key_pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  return key != nullptr && SSL_CTX_use_PrivateKey(&ctx, key.get()) == 1 &&
         SSL_CTX_check_private_key(&ctx) == 1;
}

// Of `candidates`, the socket listening on `port`; -1 when none is.
int ListeningSocket(const std::vector<int>& candidates, int port) {
  for (int fd : candidates) {
    int listening = 0;
    socklen_t size = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) continue;
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) continue;
    const int bound =
        address.ss_family == AF_INET6
            ? ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port)
            : ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
    if (bound == port) return fd;
  }
  return -1;
}

}  // namespace

HttpServer::HttpServer(ServiceContext& service, const HttpServerOptions& options)
    : options_(options),
      chat_(EndpointContext{service, calls_, draining_}),
      contemplations_(EndpointContext{service, calls_, draining_}),
      models_(EndpointContext{service, calls_, draining_}) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(ServiceContext& service,
                                                              const HttpServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-port=", options.port, " must be in [0, 65535] (or -1: no HTTP)"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-threads=", options.threads, " must be >= 1"));
  }
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-max-body-bytes=", options.max_body_bytes, " must be >= 1"));
  }
  std::unique_ptr<HttpServer> s(new HttpServer(service, options));
  if (options.tls.has_value()) {
    const TlsCredentials tls = *options.tls;
    s->server_ =
        std::make_unique<httplib::SSLServer>([tls](SSL_CTX& ctx) { return SetUpTls(ctx, tls); });
    if (!s->server_->is_valid()) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat("OpenSSL refused --tls-cert ", tls.cert_file,
                                                     " with --tls-key ", tls.key_file));
    }
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& server = *s->server_;
  const int threads = options.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // One request per connection: an idle connection never holds a worker,
  // and a refused body never has to be read to its end.
  server.set_keep_alive_max_count(1);
  server.set_read_timeout(kReadTimeoutSeconds);
  server.set_write_timeout(kWriteTimeoutSeconds);
  // httplib creates the listening socket (one per address it tries) with
  // these options; the one that ends up listening is kept for
  // StopAccepting. Bind runs on this thread, before any other.
  std::vector<int> candidates;
  server.set_socket_options([&candidates](int sock) {
    httplib::default_socket_options(sock);  // SO_REUSEADDR
    candidates.push_back(sock);
  });
  s->AddRoutes();

  const int port = options.port == 0
                       ? server.bind_to_any_port(options.bind)
                       : (server.bind_to_port(options.bind, options.port) ? options.port : -1);
  server.set_socket_options(httplib::default_socket_options);
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", HostPort(options.bind, options.port), " (HTTP)"));
  }
  s->listen_fd_.store(ListeningSocket(candidates, port));
  s->port_ = port;
  s->address_ = HostPort(options.bind, port);
  HttpServer* raw = s.get();
  s->listener_ = std::thread([raw] { raw->server_->listen_after_bind(); });
  return s;
}

void HttpServer::AddRoutes() {
  httplib::Server& server = *server_;
  // Routing happens here, before any body is read: unknown paths get 404
  // and known paths the wrong method 405; the handlers below see only
  // their own method.
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    const Path path = PathOf(req.path);
    if (path == Path::kNone) {
      SendError(res, MakeHttpError(
                         404, absl::StatusCode::kNotFound,
                         absl::StrCat("unknown request URL: ", req.method, " ", Echoed(req.path)),
                         "unknown_url"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (IsPost(path) ? req.method != "POST" : !get) {
      const char* allowed = IsPost(path) ? "POST" : "GET, HEAD";
      res.set_header("Allow", allowed);
      SendError(res, MakeHttpError(405, absl::StatusCode::kInvalidArgument,
                                   absl::StrCat(req.method, " is not allowed on ", Echoed(req.path),
                                                "; use ", allowed),
                                   "method_not_allowed"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // A client that sends "Expect: 100-continue" (curl does for large bodies)
  // learns that its body is too large before it sends it.
  const int64_t max_body = options_.max_body_bytes;
  server.set_expect_100_continue_handler(
      [max_body](const httplib::Request& req, httplib::Response& res) {
        const std::optional<int64_t> declared = ContentLength(req);
        if (IsPost(PathOf(req.path)) && declared.has_value() && *declared > max_body) {
          SendError(res, TooLarge(max_body));
          return 413;
        }
        return 100;
      });
  server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                             const httplib::ContentReader& reader) {
    chat_.Handle(req, res, [&](std::string* body) {
      return ReadBody(req, reader, options_.max_body_bytes, body);
    });
  });
  server.Post("/v1/contemplations", [this](const httplib::Request& req, httplib::Response& res,
                                           const httplib::ContentReader& reader) {
    contemplations_.Handle(req, res, [&](std::string* body) {
      return ReadBody(req, reader, options_.max_body_bytes, body);
    });
  });
  server.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    models_.List(req, res);
  });
  server.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    models_.Get(req, res, req.path.substr(kModelPrefix.size()));
  });
  // Errors the library makes itself (a malformed request line, a URI too
  // long) get OpenAI's body too; the handlers' own errors already have one.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const int status = res.status;
        HttpError error = LibraryError(status);
        error.status = status;
        SendError(res, error);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("http {} {}: {}", req.method, Echoed(req.path), what);
        SendError(res, MakeHttpError(500, absl::StatusCode::kInternal, "internal server error"));
      });
}

void HttpServer::StopAccepting() {
  draining_.store(true);
  std::call_once(stop_accepting_once_, [this] {
    const int fd = listen_fd_.load();
    if (fd >= 0) {
      // The accept loop fails and ends; connections already accepted are
      // still served (httplib::Server::stop would cut streams short).
      ::shutdown(fd, SHUT_RDWR);
    } else {
      server_->stop();
    }
  });
}

void HttpServer::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [this, grace] {
    const absl::Time deadline = absl::Now() + grace;
    StopAccepting();
    spdlog::info("http server shutting down (grace {}s, {} calls running)",
                 absl::ToDoubleSeconds(grace), calls_.size());
    if (!calls_.WaitIdle(deadline)) {
      spdlog::info("http server cancelling {} calls", calls_.size());
      calls_.CancelAll();
    }
    // Returns once every worker has answered its connection.
    if (listener_.joinable()) listener_.join();
    spdlog::info("http server stopped");
  });
}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace conclave::server::http
