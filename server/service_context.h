// What every RPC handler of the server shares: the engine (through
// orchestrator::EngineClient), the request limits, the model's description,
// the request threads, the metrics, API keys and quotas, request ids and
// seeds.
// Thread-safe.
#ifndef CONCLAVE_SERVER_SERVICE_CONTEXT_H_
#define CONCLAVE_SERVER_SERVICE_CONTEXT_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "orchestrator/engine_client.h"
#include "server/access_control.h"
#include "server/metrics/server_metrics.h"
#include "server/request_threads.h"
#include "server/serving_engine.h"
#include "server/validation.h"

namespace conclave::server {

class ServiceContext {
 public:
  // `client`, `threads`, `metrics` and `access` must outlive the context.
  ServiceContext(orchestrator::EngineClient& client, RequestLimits limits, ModelInfo model,
                 RequestThreads& threads, ServerMetrics& metrics, AccessControl& access)
      : client_(client),
        limits_(std::move(limits)),
        model_(std::move(model)),
        threads_(threads),
        metrics_(metrics),
        access_(access) {}

  orchestrator::EngineClient& client() const { return client_; }
  const RequestLimits& limits() const { return limits_; }
  const ModelInfo& model() const { return model_; }
  RequestThreads& threads() const { return threads_; }
  ServerMetrics& metrics() const { return metrics_; }
  AccessControl& access() const { return access_; }

  // A new request id ("1", "2", ...), unique within this process; it names
  // the request in logs and in the final response.
  std::string NextRequestId();
  // A fresh random seed for a request that did not give one.
  uint64_t DrawSeed();

 private:
  orchestrator::EngineClient& client_;
  const RequestLimits limits_;
  const ModelInfo model_;
  RequestThreads& threads_;
  ServerMetrics& metrics_;
  AccessControl& access_;
  std::atomic<int64_t> next_request_id_{1};
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_SERVICE_CONTEXT_H_
