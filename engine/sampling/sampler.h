// Picks the next token of one sequence from a row of logits, and reports what
// the model thought of it (logprob, top alternatives, DeepConf confidence).
//
// Order of processing, as vLLM and llama.cpp apply it:
//   1. penalties, on a copy of the logits (the raw row is never modified):
//        repetition (CTRL, over prompt + generated, each distinct token once):
//          logit > 0 ? logit / r : logit * r
//        then frequency and presence (OpenAI, over generated tokens only):
//          logit -= count * frequency_penalty + (count > 0) * presence_penalty
//      (results saturate at +-FLT_MAX, so an extreme penalty cannot make NaN).
//   2. temperature == 0: greedy, the argmax of the penalized logits (lowest id
//      on ties; with neutral penalties exactly Argmax(raw), as llama.cpp's
//      greedy sampler). Nothing below applies and no random number is used.
//   3. temperature: weight w = e^((logit - max) / T), max over the whole row.
//   4. top-k: keep the k largest logits (ties: the lower id first).
//   5. top-p: keep the shortest prefix, by descending logit, whose weight
//      reaches top_p of the total weight of what top-k kept (the token
//      crossing the threshold included).
//   6. min-p: drop tokens with p < min_p * p_max, i.e.
//      (logit - max) / T < ln(min_p).
//   7. draw from the sequence's own std::mt19937_64, seeded by `seed`: one
//      64-bit draw per sampled token, turned into u in [0, 1) (its top 53
//      bits), picks the first kept token whose cumulative weight exceeds
//      u * (total kept weight). Tokens are walked in descending order (ties
//      by id) when top-k or top-p truncated, else in id order. So a seed gives
//      the same tokens whatever else is batched, on every machine and
//      standard library.
// Weights are e^x by FastExpNonPositive (fast_exp.h, relative error < 4e-7),
// summed in double. The reported logprob, `top` and `confidence` always
// describe the raw logits (the model's own distribution): log-softmax with
// the log-sum-exp accumulated in double.
//
// Cost per call: a few vectorized passes over the vocabulary (its top list,
// its exp sum, one more for the sampling weights unless T == 1 without
// penalties) plus a selection of what top-k / top-p keep: a heap for top-k,
// and for top-p a sort of only the tokens that can be in the nucleus. Never a
// sort of the whole vocabulary. Scratch buffers are sized on the first call
// and reused: after it, a call allocates only SampledToken::top.
// Not thread-safe: one Sampler per sequence, used by the engine's step loop.
#ifndef CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_
#define CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace conclave::engine {

// Most alternatives a token may report, and the largest confidence_top_k
// (OpenAI's cap on top_logprobs; DeepConf uses k = 20).
inline constexpr int kMaxLogprobs = 20;

struct SamplingParams {
  float temperature = 0.0f;         // >= 0, finite; 0: greedy (argmax, lowest id on ties)
  float top_p = 1.0f;               // (0, 1]; 1 keeps every token
  int top_k = 0;                    // >= 0; 0: off, else keep the k most likely
  float min_p = 0.0f;               // [0, 1]: drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f;  // > 0, finite; 1: off
  float presence_penalty = 0.0f;    // [-2, 2]
  float frequency_penalty = 0.0f;   // [-2, 2]
  uint64_t seed = 0;
  int logprobs = 0;                 // [0, 20]: top alternatives reported per token
  int confidence_top_k = 20;        // [1, 20]: k of SampledToken::confidence
};

// INVALID_ARGUMENT naming the field, its value and the allowed range, e.g.
// "top_k=-1 must be >= 0". NaN fails every check.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Index of the largest value (first on ties).
int32_t Argmax(absl::Span<const float> logits);

namespace sampling_internal {
// A token under consideration: its (penalized) logit and id.
struct Candidate {
  float logit;
  int32_t id;
};
}  // namespace sampling_internal

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  // log-softmax of the raw logits (before penalties and temperature) at `token`.
  float logprob = 0.0f;
  // The `logprobs` most likely tokens under the raw distribution, best first,
  // ties by the lower id; empty when logprobs == 0. Fewer when the vocabulary
  // is smaller.
  std::vector<TokenLogprob> top;
  // DeepConf token confidence: -mean of the top-`confidence_top_k` raw
  // logprobs (>= 0; higher means a more peaked distribution).
  float confidence = 0.0f;
};

class Sampler {
 public:
  // Precondition: ValidateSamplingParams(params).ok() (CHECKed).
  explicit Sampler(const SamplingParams& params);

  // prompt: the sequence's prompt ids; generated: its generated ids so far
  // (both only read for the penalties, and only when those are not neutral).
  // logits: [vocab] raw, non-empty and finite; every id in prompt and
  // generated must be in [0, vocab) (CHECKed).
  SampledToken Sample(absl::Span<const float> logits, absl::Span<const int32_t> prompt,
                      absl::Span<const int32_t> generated);

  const SamplingParams& params() const { return params_; }

 private:
  using Candidate = sampling_internal::Candidate;
  // Logit buckets of the top-p search (see Draw).
  static constexpr int kTopPBuckets = 512;

  bool HasPenalties() const;
  // Applies the penalties to penalized_ (a copy of `logits`).
  void Penalize(absl::Span<const float> logits, absl::Span<const int32_t> prompt,
                absl::Span<const int32_t> generated);
  // Steps 3-7 over `row` (raw or penalized logits) whose maximum is `max`.
  // raw_weights_reusable: `row` is the raw logits, whose e^(row - max) the
  // log-sum-exp pass left in weights_ / block_sums_.
  int32_t Draw(absl::Span<const float> row, float max, bool raw_weights_reusable);

  SamplingParams params_;
  std::mt19937_64 rng_;
  // Scratch, sized on the first call and reused.
  Candidate top_[kMaxLogprobs];       // raw top-k, best first
  int top_size_ = 0;
  std::vector<float> penalized_;      // [vocab]
  std::vector<float> weights_;        // [vocab] e^((row - max) / T), id order
  std::vector<double> block_sums_;    // sums of weights_ per block of 1024 ids
  std::vector<Candidate> candidates_; // [vocab] truncation work space
  std::vector<float> candidate_weights_;  // [vocab] weights of candidates_
  std::array<double, kTopPBuckets> bucket_mass_;
  std::vector<int32_t> counts_;       // [vocab] occurrences in `generated`
  std::vector<uint8_t> seen_;         // [vocab] in prompt or generated
  std::vector<int32_t> touched_;      // ids with non-zero counts_ / seen_
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SAMPLING_SAMPLER_H_
