// The CPU backend: runs Llama-family and Gemma 3 decoders on the weights as
// stored in the model file (quantized, memory-mapped), with a paged KV cache
// of fp16 (default) or bf16 elements (KvCacheConfig::dtype). The default backend, and the reference the CUDA backend is checked
// against.
// Not thread-safe: owned by the engine's step loop (it uses its own pool of
// worker threads inside Forward).
#ifndef CONCLAVE_KERNELS_CPU_CPU_BACKEND_H_
#define CONCLAVE_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"

namespace conclave::kernels::cpu {

class CpuBackend : public Backend {
 public:
  // n_threads >= 1 worker threads (the calling thread counts as one).
  explicit CpuBackend(int n_threads);
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
  absl::Status LoadModel(const ModelConfig& config,
                         const ModelWeights& weights) override;
  absl::Status AllocateKvCache(const KvCacheConfig& config) override;
  const KvCacheConfig& kv_cache_config() const override { return kv_config_; }
  int64_t KvBytesPerBlock() const override;
  absl::Status Forward(const StepBatch& batch, absl::Span<float> logits) override;
  void CopyBlocks(absl::Span<const std::pair<int, int>> src_dst) override;

 private:
  struct Scratch;  // per-step activations, reused across steps

  absl::Status ValidateBatch(const StepBatch& batch, size_t logits_size) const;
  void RunLayer(int layer, const StepBatch& batch, int n_tokens,
                bool last_layer, std::vector<int>& out_rows);
  void Attention(int layer, const StepBatch& batch);

  ThreadPool pool_;
  ModelConfig config_;
  ModelWeights weights_;
  bool loaded_ = false;
  KvCacheConfig kv_config_;
  // Per layer: [num_blocks, block_size, n_kv_heads, head_dim] fp16 or bf16
  // bits (kv_config_.dtype).
  std::vector<std::vector<Half>> k_cache_;
  std::vector<std::vector<Half>> v_cache_;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_CPU_BACKEND_H_
