// What every handler of every transport (gRPC services, the HTTP endpoint)
// shares: the engine (through orchestrator::EngineClient), the request
// limits, the model's description, the request threads (so
// --max-concurrent-requests bounds the calls of both transports together),
// the metrics, API keys and quotas, request ids and seeds.
// Thread-safe.
#ifndef CONCLAVE_SERVER_SERVICE_CONTEXT_H_
#define CONCLAVE_SERVER_SERVICE_CONTEXT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "orchestrator/engine_client.h"
#include "server/access_control.h"
#include "server/metrics/server_metrics.h"
#include "server/request_threads.h"
#include "server/serving_engine.h"
#include "server/validation.h"

namespace conclave::server {

// The server's own limits (command-line flags).
struct ServiceOptions {
  int max_agents = 8;                 // Contemplate agents (and HTTP `n`) per request
  int max_prompt_tokens = 0;          // 0: the model's context - 1
  int max_tokens_limit = 0;           // 0: the model's context - 1
  int max_concurrent_requests = 256;  // running calls, every transport together
};

class ServiceContext {
 public:
  // Checks `options` against the engine (INVALID_ARGUMENT naming the flag
  // and its limit) and builds the request limits and the request threads.
  // `client` must outlive the context, and so must `metrics` and `access`
  // when given; without them the context records into metrics of its own,
  // which nothing exports, and runs in open mode (AccessControl::Open; the
  // caller has checked that the address allows it).
  static absl::StatusOr<std::unique_ptr<ServiceContext>> Create(
      orchestrator::EngineClient& client, const ModelInfo& model, const ServiceOptions& options,
      ServerMetrics* metrics = nullptr, AccessControl* access = nullptr);
  ~ServiceContext();  // Close()
  ServiceContext(const ServiceContext&) = delete;
  ServiceContext& operator=(const ServiceContext&) = delete;

  orchestrator::EngineClient& client() const { return client_; }
  const RequestLimits& limits() const { return limits_; }
  const ModelInfo& model() const { return model_; }
  RequestThreads& threads() const { return *threads_; }
  ServerMetrics& metrics() const { return *metrics_; }
  AccessControl& access() const { return *access_; }

  // A new request id ("1", "2", ...), unique within this process; it names
  // the request in logs and in the final response.
  std::string NextRequestId();
  // A fresh random seed for a request that did not give one.
  uint64_t DrawSeed();

  // Refuses new work and waits for every request thread (RequestThreads::
  // Close): call once every transport has ended or cancelled its calls.
  // Idempotent.
  void Close() { threads_->Close(); }

 private:
  ServiceContext(orchestrator::EngineClient& client, RequestLimits limits, ModelInfo model)
      : client_(client), limits_(std::move(limits)), model_(std::move(model)) {}

  orchestrator::EngineClient& client_;
  const RequestLimits limits_;
  const ModelInfo model_;
  std::unique_ptr<ServerMetrics> own_metrics_;  // when Create was given none
  std::unique_ptr<AccessControl> own_access_;   // open mode, when Create was given none
  ServerMetrics* metrics_ = nullptr;
  AccessControl* access_ = nullptr;
  std::unique_ptr<RequestThreads> threads_;
  std::atomic<int64_t> next_request_id_{1};
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_SERVICE_CONTEXT_H_
