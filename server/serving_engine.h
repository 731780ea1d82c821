// Everything behind the API for one model: the loaded GGUF file, the CPU
// backend, the batched engine and the in-process EngineClient that the
// services use, plus the model's public description (ListModels).
// Thread-safe after Load (each part documents its own threading).
#ifndef CONCLAVE_SERVER_SERVING_ENGINE_H_
#define CONCLAVE_SERVER_SERVING_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/model/model.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "orchestrator/engine_client.h"

namespace conclave::server {

// What ListModels says about a model.
struct ModelInfo {
  std::string id;            // file name without ".gguf"
  std::string display_name;  // general.name
  std::string architecture;  // general.architecture
  int context_length = 0;
  std::string chat_format;   // engine::ChatFormatName
  std::string quantization;  // "Q4_1", "Q4_K_M", ...
};

struct EngineOptions {
  std::string model_path;
  int threads = 0;           // CPU threads; 0: every core
  int64_t kv_cache_mib = 512;
  // KV element type: fp16 (logits bit-identical to llama.cpp's) or bf16.
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF16;
  int max_agents = 8;        // sequences per request (Contemplate agents)
  int max_running_sequences = 64;  // engine batch slots (raised to max_agents)
  // Admission (docs/overload.md): calls admitted but not yet running in the
  // engine beyond which a new call gets RESOURCE_EXHAUSTED (0: only the
  // engine's hard bound of 256 waiting requests), and how long one may wait
  // to start before it is failed instead of run late (0: no limit).
  int max_queued_requests = 128;
  int64_t max_queue_wait_ms = 30000;
};

// The weight format: general.file_type as llama.cpp names it, else the type
// that holds most of the weight bytes.
std::string QuantizationName(const engine::GgufFile& file);

class ServingEngine {
 public:
  // Loads and checks the model (errors name the file and what is wrong with
  // it: missing, truncated, unsupported), loads it into a CpuBackend and
  // starts the engine.
  static absl::StatusOr<std::unique_ptr<ServingEngine>> Load(const EngineOptions& options);
  ~ServingEngine();  // Shutdown()
  ServingEngine(const ServingEngine&) = delete;
  ServingEngine& operator=(const ServingEngine&) = delete;

  // Aborts what is still running and stops the engine's step loop; Submit
  // then fails with UNAVAILABLE. Idempotent.
  void Shutdown();

  engine::Engine& engine() { return *engine_; }
  orchestrator::EngineClient& client() { return *client_; }
  const engine::Model& model() const { return *model_; }
  const ModelInfo& info() const { return info_; }
  int threads() const { return threads_; }
  std::string backend_name() const { return backend_->name(); }  // "cpu", ...

 private:
  ServingEngine() = default;

  // Declaration order is destruction order reversed: the client and engine
  // go before the backend and the model they borrow.
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<orchestrator::LocalEngineClient> client_;
  ModelInfo info_;
  int threads_ = 0;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_SERVING_ENGINE_H_
