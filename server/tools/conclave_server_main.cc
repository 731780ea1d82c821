// conclave-server: serves one GGUF model over the conclave.v1 gRPC API
// (Generate, Contemplate, ListModels), with the gRPC health service and
// server reflection.
//
//   conclave-server --model PATH [--grpc-port 50051] [--bind 127.0.0.1]
//       [--threads N] [--max-agents 8] [--kv-cache-mib 512]
//       [--max-prompt-tokens N] [--max-tokens-limit N]
//       [--max-concurrent-requests 256] [--shutdown-grace-seconds 10]
//
// Once serving it prints one line to stdout, "listening HOST:PORT" (with the
// port actually bound, so --grpc-port 0 picks a free one), and logs to
// stderr. A bad model file is reported on stderr with exit status 1.
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
#include "server/grpc_server.h"
#include "server/serving_engine.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "path to a GGUF model file");
ABSL_FLAG(int, grpc_port, 50051, "gRPC port; 0 picks a free port (printed on stdout)");
ABSL_FLAG(std::string, bind, "127.0.0.1", "address to listen on");
ABSL_FLAG(int, threads, 0, "CPU threads of the backend (0: all cores)");
ABSL_FLAG(int, max_agents, 8, "most agents per Contemplate request");
ABSL_FLAG(int64_t, kv_cache_mib, 512, "KV cache size in MiB");
ABSL_FLAG(int, max_prompt_tokens, 0, "most prompt tokens per request (0: the model's context - 1)");
ABSL_FLAG(int, max_tokens_limit, 0, "largest max_tokens a request may ask for (0: context - 1)");
ABSL_FLAG(int, max_concurrent_requests, 256, "most Generate/Contemplate calls running at once");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "on SIGTERM/SIGINT, how long running calls may take to finish");

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

  conclave::server::EngineOptions engine_options;
  engine_options.model_path = absl::GetFlag(FLAGS_model);
  if (engine_options.model_path.empty()) {
    return Fail(absl::InvalidArgumentError("--model is required"));
  }
  engine_options.threads = absl::GetFlag(FLAGS_threads);
  engine_options.kv_cache_mib = absl::GetFlag(FLAGS_kv_cache_mib);
  engine_options.max_agents = absl::GetFlag(FLAGS_max_agents);
  const absl::Duration grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  if (grace < absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError("--shutdown-grace-seconds must be >= 0"));
  }

  absl::StatusOr<std::unique_ptr<conclave::server::ServingEngine>> serving =
      conclave::server::ServingEngine::Load(engine_options);
  if (!serving.ok()) return Fail(serving.status());

  conclave::server::ServerOptions server_options;
  server_options.bind = absl::GetFlag(FLAGS_bind);
  server_options.port = absl::GetFlag(FLAGS_grpc_port);
  server_options.max_agents = engine_options.max_agents;
  server_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  server_options.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  server_options.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  absl::StatusOr<std::unique_ptr<conclave::server::GrpcServer>> server =
      conclave::server::GrpcServer::Start((*serving)->client(), (*serving)->info(),
                                          server_options);
  if (!server.ok()) return Fail(server.status());

  const conclave::server::ModelInfo& info = (*serving)->info();
  spdlog::info(
      "serving model={} arch={} quant={} context={} chat_format={} threads={} kv_cache_mib={} "
      "max_agents={} max_prompt_tokens={} max_tokens_limit={}",
      info.id, info.architecture, info.quantization, info.context_length, info.chat_format,
      (*serving)->threads(), engine_options.kv_cache_mib, engine_options.max_agents,
      (*server)->limits().max_prompt_tokens, (*server)->limits().max_tokens_limit);
  std::printf("listening %s\n", (*server)->address().c_str());
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
