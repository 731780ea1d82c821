// conclave-server: serves one GGUF model over the conclave.v1 gRPC API
// (Generate, Contemplate, ListModels), with the gRPC health service and
// server reflection.
//
//   conclave-server --model PATH [--grpc-port 50051] [--bind 127.0.0.1]
//       [--threads N] [--max-agents 8] [--kv-cache-mib 512]
//       [--max-prompt-tokens N] [--max-tokens-limit N]
//       [--max-concurrent-requests 256] [--shutdown-grace-seconds 10]
//       [--metrics-port 9400] [--api-keys FILE]
//
// With --api-keys, Generate, Contemplate and ListModels need
// "authorization: Bearer <key>" from the key store FILE (`conclave keys
// issue`), reloaded when it changes, and run under the key's quotas
// (docs/auth.md). Without it the server runs in open mode, which is
// allowed only on a loopback --bind: any other address exits 1 before
// anything is loaded or bound.
//
// Once serving it prints "listening HOST:PORT" on stdout (with the port
// actually bound, so --grpc-port 0 picks a free one), then, unless
// --metrics-port is -1, "metrics HOST:PORT": the Prometheus endpoint
// (http://HOST:PORT/metrics, same --bind address). Logs go to stderr. A bad
// model file, or a port that cannot be bound, is reported on stderr with
// exit status 1 before anything is printed on stdout.
//
// SIGTERM or SIGINT: stop accepting calls, let running ones finish for up to
// --shutdown-grace-seconds, cancel the rest, stop the engine, exit 0. A
// second signal during that wait exits at once with status 1. Signals are
// taken with sigwait on ordinary threads (they are blocked everywhere), so
// no work runs inside a signal handler.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
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
#include "server/metrics/build_info.h"
#include "server/metrics/engine_collector.h"
#include "server/metrics/metrics_exposer.h"
#include "server/metrics/server_metrics.h"
#include "server/serving_engine.h"
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
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "on SIGTERM/SIGINT, how long running calls may take to finish");
ABSL_FLAG(int, metrics_port, 9400,
          "Prometheus /metrics port on the --bind address; 0 picks a free port (printed on "
          "stdout), -1 serves no metrics");
ABSL_FLAG(std::string, api_keys, "",
          "API key store file (`conclave keys issue --store FILE`), reloaded when it changes; "
          "empty: open mode, allowed only on a loopback --bind");

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
  const absl::Duration grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  if (grace < absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError("--shutdown-grace-seconds must be >= 0"));
  }

  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < -1 || metrics_port > 65535) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--metrics-port=", metrics_port, " must be in [0, 65535], or -1")));
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

  conclave::server::ServerOptions server_options;
  server_options.bind = absl::GetFlag(FLAGS_bind);
  server_options.port = absl::GetFlag(FLAGS_grpc_port);
  server_options.max_agents = engine_options.max_agents;
  server_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  server_options.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  server_options.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  absl::StatusOr<std::unique_ptr<conclave::server::GrpcServer>> server =
      conclave::server::GrpcServer::Start((*serving)->client(), (*serving)->info(),
                                          server_options, &metrics, access->get());
  if (!server.ok()) return Fail(server.status());

  const conclave::server::ModelInfo& info = (*serving)->info();
  spdlog::info(
      "serving model={} arch={} quant={} context={} chat_format={} threads={} kv_cache_mib={} "
      "kv_dtype={} max_agents={} max_prompt_tokens={} max_tokens_limit={}",
      info.id, info.architecture, info.quantization, info.context_length, info.chat_format,
      (*serving)->threads(), engine_options.kv_cache_mib,
      conclave::kernels::KvDtypeName(engine_options.kv_dtype), engine_options.max_agents,
      (*server)->limits().max_prompt_tokens, (*server)->limits().max_tokens_limit);
  // "listening" stays the first line: clients that read only it keep working.
  std::printf("listening %s\n", (*server)->address().c_str());
  if (exposer != nullptr) std::printf("metrics %s\n", exposer->address().c_str());
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

  (*server)->Shutdown(grace);
  (*serving)->Shutdown();
  spdlog::info("stopped");
  return 0;
}
