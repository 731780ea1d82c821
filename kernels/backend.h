// The seam between the engine and the hardware. A Backend owns the model's
// weights as the device needs them and the KV-cache pool, and runs one
// forward step over a batch of sequences. The engine decides which physical
// KV blocks each sequence uses (see engine's block manager); the backend only
// reads and writes the blocks it is told to.
// Implementations: kernels/cpu (the default, and the reference) and
// kernels/cuda. The engine never includes a device header.
#ifndef CONCLAVE_KERNELS_BACKEND_H_
#define CONCLAVE_KERNELS_BACKEND_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/model_spec.h"

namespace conclave::kernels {

// The element type of the KV cache. fp16 is the default and the one whose
// attention is bit-identical to llama.cpp's; bf16 has fp32's range (no
// overflow of large activations) with an 8-bit significand (unit roundoff
// 2^-8, against fp16's 2^-11). Both take 2 bytes.
enum class KvDtype { kF16, kBF16 };

// "fp16" / "bf16" (the names the command-line flags take).
const char* KvDtypeName(KvDtype dtype);
// Parses "fp16" (or "f16") and "bf16"; INVALID_ARGUMENT names the value.
absl::StatusOr<KvDtype> ParseKvDtype(std::string_view name);
// Bytes of one K or V element.
inline int KvDtypeBytes(KvDtype) { return 2; }

struct KvCacheConfig {
  int num_blocks = 0;
  int block_size = 16;  // token slots per block
  KvDtype dtype = KvDtype::kF16;
};

// One sequence's share of a step: `num_tokens` new tokens, taken from
// StepBatch::tokens starting at `token_begin`, at positions
// [start_pos, start_pos + num_tokens). `block_table[i]` is the physical block
// that holds positions [i * block_size, (i + 1) * block_size); it must cover
// every position up to start_pos + num_tokens - 1. Positions < start_pos are
// already in the cache.
struct SequenceStep {
  int token_begin = 0;
  int num_tokens = 0;
  int start_pos = 0;
  absl::Span<const int32_t> block_table;
  bool want_logits = false;  // logits for this sequence's last new token
  // Attention's float summation order (see kernels/cpu/simd_order.h) is a
  // property of each position, so that a sequence recomputed after
  // preemption, or prefilled in other chunks, gets the same values it had:
  // positions >= decode_from_pos use the one-token (decode) order, earlier
  // ones the many-token (prefill) order. -1: decided by this step's
  // num_tokens, as llama.cpp does.
  int decode_from_pos = -1;
};

struct StepBatch {
  absl::Span<const int32_t> tokens;  // [total new tokens]
  std::vector<SequenceStep> sequences;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Short name for logs and metrics ("cpu", "cuda").
  virtual std::string name() const = 0;

  // Takes the model. The weight data must outlive the backend (the CPU
  // backend reads the mapped file directly; a device backend copies it).
  // INVALID_ARGUMENT for shapes or tensor types it cannot run.
  virtual absl::Status LoadModel(const ModelConfig& config,
                                 const ModelWeights& weights) = 0;

  // (Re)allocates the KV pool. RESOURCE_EXHAUSTED when it does not fit.
  virtual absl::Status AllocateKvCache(const KvCacheConfig& config) = 0;
  virtual const KvCacheConfig& kv_cache_config() const = 0;

  // Bytes of KV storage one block takes over all layers, in the dtype of
  // kv_cache_config() (before AllocateKvCache: fp16, block size 16).
  virtual int64_t KvBytesPerBlock() const = 0;

  // Runs every sequence of `batch` through the model, writing their K/V into
  // the cache, and fills `logits` ([number of sequences with want_logits,
  // vocab], in batch order) with the raw final-layer logits.
  virtual absl::Status Forward(const StepBatch& batch,
                               absl::Span<float> logits) = 0;

  // Copies whole blocks (src -> dst) in every layer: copy-on-write support.
  virtual void CopyBlocks(absl::Span<const std::pair<int, int>> src_dst) = 0;
};

}  // namespace conclave::kernels

#endif  // CONCLAVE_KERNELS_BACKEND_H_
