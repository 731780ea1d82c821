// Picks the next token from a row of logits. Temperature 0 is greedy
// (argmax, lowest id on ties, as llama.cpp's greedy sampler); otherwise
// softmax at the temperature, optional top-p (nucleus) truncation, and a draw
// from the sequence's own seeded generator, so a seed gives the same tokens
// whatever else runs beside it.
#ifndef CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_
#define CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace conclave::engine {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]; 1 keeps every token
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the parameter when out of range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Index of the largest value (first on ties).
int32_t Argmax(absl::Span<const float> logits);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Precondition: logits non-empty and finite.
  int32_t Sample(absl::Span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_
