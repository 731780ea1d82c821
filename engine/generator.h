// Single-sequence generation on a Backend: prefill the prompt in chunks, then
// decode one token per step until max_tokens or an end-of-generation token.
// The KV cache holds one contiguous run of blocks for the sequence.
// (The batched Engine with paged, shared KV blocks builds on the same
// Backend::Forward; this loop is the CLI's and the parity tests' path.)
#ifndef CONCLAVE_ENGINE_GENERATOR_H_
#define CONCLAVE_ENGINE_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/sampling/sampler.h"
#include "kernels/backend.h"

namespace conclave::engine {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  // Tokens that end generation (after being reported); ignored if ignore_eos.
  std::function<bool(int32_t)> is_end_of_generation;
  bool ignore_eos = false;
  int prefill_chunk = 512;  // prompt tokens per forward step
  bool keep_all_logits = false;  // fill GenerateResult::all_logits
  int block_size = 16;
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF16;  // KV cache elements
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (end token included)
  bool stopped_at_eos = false;
  double prefill_seconds = 0.0;  // until the first token's logits
  double decode_seconds = 0.0;   // the remaining steps
  // Raw logits of the first generated position (after the prompt): [vocab].
  std::vector<float> first_logits;
  // With keep_all_logits: the logits each token was sampled from,
  // [tokens.size(), vocab].
  std::vector<float> all_logits;
};

// Generates from `prompt` (non-empty). `on_token` is called with each new id
// as soon as it is sampled; returning false stops generation. Allocates the
// backend's KV cache for prompt + max_tokens positions.
absl::StatusOr<GenerateResult> Generate(
    kernels::Backend& backend, int vocab_size, absl::Span<const int32_t> prompt,
    const GenerateOptions& options,
    const std::function<bool(int32_t)>& on_token = nullptr);

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_GENERATOR_H_
