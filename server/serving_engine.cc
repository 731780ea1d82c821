#include "server/serving_engine.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "engine/tokenizer/chat_template.h"
#include "kernels/ggml_types.h"

namespace conclave::server {

std::string QuantizationName(const engine::GgufFile& file) {
  // llama.cpp's llama_ftype values (general.file_type).
  static const std::map<int64_t, const char*> kFileTypes = {
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
      {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
      {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
      {18, "Q6_K"},   {32, "BF16"},
  };
  if (std::optional<int64_t> type = file.GetInt("general.file_type"); type.has_value()) {
    if (auto it = kFileTypes.find(*type); it != kFileTypes.end()) return it->second;
  }
  std::map<kernels::GgmlType, uint64_t> bytes;
  for (const engine::GgufTensorInfo& t : file.tensors()) bytes[t.type] += t.num_bytes;
  if (bytes.empty()) return "unknown";
  const auto most = std::max_element(bytes.begin(), bytes.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  return kernels::TypeName(most->first);
}

absl::StatusOr<std::unique_ptr<ServingEngine>> ServingEngine::Load(const EngineOptions& options) {
  if (options.max_agents < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-agents=", options.max_agents, " must be >= 1"));
  }
  if (options.max_queued_requests < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-queued-requests=", options.max_queued_requests, " must be >= 0"));
  }
  if (options.max_queue_wait_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-queue-wait-ms=", options.max_queue_wait_ms, " must be >= 0"));
  }
  if (options.kv_cache_mib < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-cache-mib=", options.kv_cache_mib, " must be >= 1"));
  }
  std::unique_ptr<ServingEngine> s(new ServingEngine());
  absl::StatusOr<std::unique_ptr<engine::Model>> model = engine::Model::Load(options.model_path);
  if (!model.ok()) return model.status();
  s->model_ = *std::move(model);
  absl::StatusOr<engine::ChatFormat> format = engine::DetectChatFormat(s->model_->file());
  if (!format.ok()) {
    return absl::Status(format.status().code(),
                        absl::StrCat(options.model_path, ": ", format.status().message()));
  }

  s->threads_ = options.threads > 0 ? options.threads
                                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  s->backend_ = std::make_unique<kernels::cpu::CpuBackend>(s->threads_);
  if (absl::Status st = s->backend_->LoadModel(s->model_->config(), s->model_->weights()); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat(options.model_path, ": ", st.message()));
  }

  engine::EngineConfig config;
  config.kv_cache_bytes = options.kv_cache_mib << 20;
  config.kv_dtype = options.kv_dtype;
  config.max_sequences_per_request = options.max_agents;
  config.scheduler.max_running_sequences =
      std::max(options.max_running_sequences, options.max_agents);
  config.max_queued_requests = options.max_queued_requests;
  if (options.max_queue_wait_ms > 0) {
    config.max_queue_wait = absl::Milliseconds(options.max_queue_wait_ms);
  }
  // The hard bound on every waiting request leaves room beside a full queue
  // for the continuations of running calls (a forced answer per agent, a
  // thinking call's answer phase), which the queue bound never refuses.
  config.scheduler.max_waiting_groups =
      std::max(config.scheduler.max_waiting_groups,
               options.max_queued_requests + config.scheduler.max_running_sequences);
  absl::StatusOr<std::unique_ptr<engine::Engine>> eng =
      engine::Engine::Create(*s->backend_, s->model_->config(), s->model_->tokenizer(), config);
  if (!eng.ok()) return eng.status();
  s->engine_ = *std::move(eng);

  ModelInfo& info = s->info_;
  info.id = std::string(absl::StripSuffix(
      std::filesystem::path(options.model_path).filename().string(), ".gguf"));
  info.display_name = s->model_->name();
  info.architecture = s->model_->file().GetString("general.architecture").value_or("unknown");
  info.context_length = s->model_->config().context_length;
  info.chat_format = engine::ChatFormatName(*format);
  info.quantization = QuantizationName(s->model_->file());
  s->client_ = std::make_unique<orchestrator::LocalEngineClient>(
      *s->engine_, s->model_->tokenizer(), *format, info.context_length, info.id);
  return s;
}

ServingEngine::~ServingEngine() { Shutdown(); }

void ServingEngine::Shutdown() {
  if (engine_ != nullptr) engine_->Shutdown();
}

}  // namespace conclave::server
