// The serving engine the server's C++ tests (grpc_server_test,
// http_server_test) run on, so both use the same small settings.
#ifndef CONCLAVE_TESTS_SERVER_TEST_SERVING_ENGINE_H_
#define CONCLAVE_TESTS_SERVER_TEST_SERVING_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/serving_engine.h"

namespace conclave::server {

// `model_path` on 2 threads with a 64 MiB KV cache, `max_agents` sequences
// per request.
inline absl::StatusOr<std::unique_ptr<ServingEngine>> LoadTestServingEngine(
    const std::string& model_path, int max_agents) {
  EngineOptions options;
  options.model_path = model_path;
  options.threads = 2;
  options.kv_cache_mib = 64;
  options.max_agents = max_agents;
  return ServingEngine::Load(options);
}

}  // namespace conclave::server

#endif  // CONCLAVE_TESTS_SERVER_TEST_SERVING_ENGINE_H_
