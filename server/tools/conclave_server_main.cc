// conclave-server: serves one GGUF model over the conclave.v1 gRPC API
// (Generate, Contemplate, ListModels), with the gRPC health service and
// server reflection, and over an OpenAI-compatible HTTP endpoint
// (/v1/chat/completions, /v1/contemplations, /v1/models; docs/http.md).
//
//   conclave-server --model PATH [--grpc-port 50051] [--bind 127.0.0.1]
//       [--threads N] [--max-agents 8] [--kv-cache-mib 512]
//       [--max-prompt-tokens N] [--max-tokens-limit N]
//       [--max-concurrent-requests 256] [--max-queued-requests 128]
//       [--max-queue-wait-ms 30000] [--shutdown-grace-seconds 10]
//       [--metrics-port 9400] [--api-keys FILE] [--http-port 8080]
//       [--http-threads N] [--http-max-body-bytes 1048576]
//       [--tls-cert FILE --tls-key FILE]
//
// With --api-keys, Generate, Contemplate and ListModels need
// "authorization: Bearer <key>" from the key store FILE (`conclave keys
// issue`), reloaded when it changes, and run under the key's quotas
// (docs/auth.md). Without it the server runs in open mode, which is
// allowed only on a loopback --bind: any other address exits 1 before
// anything is loaded or bound. Both transports share the keys, the quotas
// and one --max-concurrent-requests.
//
// --tls-cert and --tls-key (both or neither) serve gRPC and HTTP over TLS;
// a missing, unreadable or mismatched file exits 1 before anything is
// loaded or bound.
//
// Once serving it prints "listening HOST:PORT" on stdout (with the port
// actually bound, so --grpc-port 0 picks a free one), then, unless
// --metrics-port is -1, "metrics HOST:PORT": the Prometheus endpoint
// (http://HOST:PORT/metrics, same --bind address), then, unless
// --http-port is -1, "http HOST:PORT": the OpenAI-compatible endpoint
// (http:// or, with TLS, https://HOST:PORT/v1/...). Logs go to stderr. A
// bad model file, or a port that cannot be bound, is reported on stderr
// with exit status 1 before anything is printed on stdout.
//
// SIGTERM or SIGINT: stop accepting calls on both transports, let running
// ones finish for up to --shutdown-grace-seconds, cancel the rest, stop the
// engine, exit 0. A
// second signal during that wait exits at once with status 1. Signals are
// taken with sigwait on ordinary threads (they are blocked everywhere), so
// no work runs inside a signal handler.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/tools/dash_flags.h"
#include "kernels/backend.h"
#include "server/access_control.h"
#include "server/auth/open_mode.h"
#include "server/grpc_server.h"
#include "server/http/http_server.h"
#include "server/metrics/build_info.h"
#include "server/metrics/engine_collector.h"
#include "server/metrics/metrics_exposer.h"
#include "server/metrics/server_metrics.h"
#include "server/service_context.h"
#include "server/serving_engine.h"
#include "server/tls_credentials.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "path to a GGUF model file");
ABSL_FLAG(int, grpc_port, 50051, "gRPC port; 0 picks a free port (printed on stdout)");
ABSL_FLAG(std::string, bind, "127.0.0.1", "address to listen on");
ABSL_FLAG(int, threads, 0, "CPU threads of the backend (0: all cores)");
ABSL_FLAG(int, max_agents, 8, "most agents per Contemplate request");
ABSL_FLAG(int64_t, kv_cache_mib, 512, "KV cache size in MiB");
ABSL_FLAG(std::string, kv_dtype, "fp16",
          "KV cache element type: fp16 (bit-identical to llama.cpp) or bf16");
ABSL_FLAG(int, max_prompt_tokens, 0, "most prompt tokens per request (0: the model's context - 1)");
ABSL_FLAG(int, max_tokens_limit, 0, "largest max_tokens a request may ask for (0: context - 1)");
ABSL_FLAG(int, max_concurrent_requests, 256, "most Generate/Contemplate calls running at once");
ABSL_FLAG(int, max_queued_requests, 128,
          "calls admitted but not yet running in the engine; beyond it a call gets "
          "RESOURCE_EXHAUSTED at once (0: only the engine's bound of 256; docs/overload.md)");
ABSL_FLAG(int64_t, max_queue_wait_ms, 30000,
          "a call that has waited this long in the engine's queue without starting gets "
          "RESOURCE_EXHAUSTED instead of running late (0: no limit; docs/overload.md)");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "on SIGTERM/SIGINT, how long running calls may take to finish");
ABSL_FLAG(int, metrics_port, 9400,
          "Prometheus /metrics port on the --bind address; 0 picks a free port (printed on "
          "stdout), -1 serves no metrics");
ABSL_FLAG(std::string, api_keys, "",
          "API key store file (`conclave keys issue --store FILE`), reloaded when it changes; "
          "empty: open mode, allowed only on a loopback --bind");
ABSL_FLAG(int, http_port, 8080,
          "OpenAI-compatible HTTP port on the --bind address; 0 picks a free port (printed on "
          "stdout), -1 serves no HTTP");
ABSL_FLAG(int, http_threads, 0,
          "HTTP worker threads, each serving one connection at a time (a streaming call holds "
          "one until its end); 0: --max-concurrent-requests + 8, within [16, 256]");
ABSL_FLAG(int64_t, http_max_body_bytes, 1 << 20,
          "largest HTTP request body; larger ones get 413");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve gRPC and HTTP over TLS (with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert (unencrypted)");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "conclave-server: " << status << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread exists, so that every
  // thread inherits the mask and only sigwait below ever receives them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::SetProgramUsageMessage("conclave-server --model PATH [--grpc-port 50051] [options]");
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  absl::ParseCommandLine(argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("conclave-server"));

  // Who may connect decides whether keys are required: checked before
  // anything is loaded or bound.
  const std::string api_keys = absl::GetFlag(FLAGS_api_keys);
  if (api_keys.empty()) {
    if (absl::Status s = conclave::server::auth::CheckOpenModeAllowed(absl::GetFlag(FLAGS_bind));
        !s.ok()) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat(s.message(), " (conclave-server --api-keys FILE)")));
    }
  }

  // TLS material is read and checked before anything is loaded or bound.
  absl::StatusOr<std::optional<conclave::server::TlsCredentials>> tls =
      conclave::server::LoadTlsCredentials(absl::GetFlag(FLAGS_tls_cert),
                                           absl::GetFlag(FLAGS_tls_key));
  if (!tls.ok()) return Fail(tls.status());

  conclave::server::EngineOptions engine_options;
  engine_options.model_path = absl::GetFlag(FLAGS_model);
  if (engine_options.model_path.empty()) {
    return Fail(absl::InvalidArgumentError("--model is required"));
  }
  engine_options.threads = absl::GetFlag(FLAGS_threads);
  engine_options.kv_cache_mib = absl::GetFlag(FLAGS_kv_cache_mib);
  absl::StatusOr<conclave::kernels::KvDtype> kv_dtype =
      conclave::kernels::ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) return Fail(kv_dtype.status());
  engine_options.kv_dtype = *kv_dtype;
  engine_options.max_agents = absl::GetFlag(FLAGS_max_agents);
  engine_options.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  engine_options.max_queue_wait_ms = absl::GetFlag(FLAGS_max_queue_wait_ms);
  const absl::Duration grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  if (grace < absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError("--shutdown-grace-seconds must be >= 0"));
  }

  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < -1 || metrics_port > 65535) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--metrics-port=", metrics_port, " must be in [0, 65535], or -1")));
  }
  const int http_port = absl::GetFlag(FLAGS_http_port);
  if (http_port < -1 || http_port > 65535) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--http-port=", http_port, " must be in [0, 65535], or -1")));
  }

  absl::StatusOr<std::unique_ptr<conclave::server::ServingEngine>> serving =
      conclave::server::ServingEngine::Load(engine_options);
  if (!serving.ok()) return Fail(serving.status());

  // Metrics are recorded always and exported unless --metrics-port is -1.
  // The exposer starts before the gRPC server, so that a taken metrics port
  // fails the start before "listening" is printed.
  conclave::server::ServingEngine& engine = **serving;
  conclave::server::ServerMetrics metrics(
      engine.info().id, conclave::server::CurrentBuild(engine.backend_name()));
  auto engine_collector = std::make_shared<conclave::server::EngineCollector>(
      engine.info().id, [&engine] { return engine.engine().stats(); });
  conclave::server::AccessControl::Options access_options;
  access_options.key_store_path = api_keys;
  access_options.metrics = &metrics;
  absl::StatusOr<std::unique_ptr<conclave::server::AccessControl>> access =
      conclave::server::AccessControl::Create(access_options);
  if (!access.ok()) return Fail(access.status());
  spdlog::info("auth: {}", (*access)->Describe());

  std::unique_ptr<conclave::server::MetricsExposer> exposer;
  if (metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<conclave::server::MetricsExposer>> started =
        conclave::server::MetricsExposer::Start(absl::GetFlag(FLAGS_bind), metrics_port,
                                                {metrics.registry(), engine_collector});
    if (!started.ok()) return Fail(started.status());
    exposer = *std::move(started);
  }

  // What both transports share: limits, keys, metrics, and the request
  // threads that bound their calls together.
  conclave::server::ServiceOptions service_options;
  service_options.max_agents = engine_options.max_agents;
  service_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  service_options.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  service_options.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  absl::StatusOr<std::unique_ptr<conclave::server::ServiceContext>> context =
      conclave::server::ServiceContext::Create((*serving)->client(), (*serving)->info(),
                                               service_options, &metrics, access->get());
  if (!context.ok()) return Fail(context.status());

  conclave::server::ServerOptions server_options;
  server_options.bind = absl::GetFlag(FLAGS_bind);
  server_options.port = absl::GetFlag(FLAGS_grpc_port);
  server_options.tls = *tls;
  absl::StatusOr<std::unique_ptr<conclave::server::GrpcServer>> server =
      conclave::server::GrpcServer::Start(**context, server_options);
  if (!server.ok()) return Fail(server.status());

  std::unique_ptr<conclave::server::http::HttpServer> http;
  if (http_port >= 0) {
    conclave::server::http::HttpServerOptions http_options;
    http_options.bind = absl::GetFlag(FLAGS_bind);
    http_options.port = http_port;
    http_options.threads = absl::GetFlag(FLAGS_http_threads);
    if (http_options.threads == 0) {
      // Enough for every call the shared limit admits, plus a few to answer
      // the ones it turns away; bounded, as each is a thread.
      http_options.threads = std::clamp(service_options.max_concurrent_requests + 8, 16, 256);
    }
    http_options.max_body_bytes = absl::GetFlag(FLAGS_http_max_body_bytes);
    http_options.tls = *tls;
    absl::StatusOr<std::unique_ptr<conclave::server::http::HttpServer>> started =
        conclave::server::http::HttpServer::Start(**context, http_options);
    if (!started.ok()) return Fail(started.status());
    http = *std::move(started);
  }

  const conclave::server::ModelInfo& info = (*serving)->info();
  spdlog::info(
      "serving model={} arch={} quant={} context={} chat_format={} threads={} kv_cache_mib={} "
      "kv_dtype={} max_agents={} max_prompt_tokens={} max_tokens_limit={} tls={}",
      info.id, info.architecture, info.quantization, info.context_length, info.chat_format,
      (*serving)->threads(), engine_options.kv_cache_mib,
      conclave::kernels::KvDtypeName(engine_options.kv_dtype), engine_options.max_agents,
      (*server)->limits().max_prompt_tokens, (*server)->limits().max_tokens_limit,
      tls->has_value() ? "on" : "off");
  // "listening" stays the first line: clients that read only it keep working.
  std::printf("listening %s\n", (*server)->address().c_str());
  if (exposer != nullptr) std::printf("metrics %s\n", exposer->address().c_str());
  if (http != nullptr) std::printf("http %s\n", http->address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&shutdown_signals, &signal_number);
  spdlog::info("received {}; shutting down", strsignal(signal_number));
  std::thread([shutdown_signals] {
    int again = 0;
    sigwait(&shutdown_signals, &again);
    spdlog::warn("received {} again; exiting now", strsignal(again));
    spdlog::shutdown();
    std::_Exit(1);
  }).detach();

  // Both transports stop taking calls at once and share one grace period;
  // then the request threads of both are joined and the engine stops.
  const absl::Time deadline = absl::Now() + grace;
  if (http != nullptr) http->StopAccepting();
  (*server)->Shutdown(grace);
  if (http != nullptr) http->Shutdown(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  (*context)->Close();
  (*serving)->Shutdown();
  spdlog::info("stopped");
  return 0;
}
