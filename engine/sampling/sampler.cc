#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/sampling/fast_exp.h"
#include "kernels/check.h"

// The passes over the whole vocabulary are written with GCC vector types and
// built twice, for AVX2 and for baseline x86-64, picked at load time. No
// multiply-add in this file may be fused (not even when the whole build
// targets FMA), so both give the same bits: the same tokens for a seed on
// every machine.
#pragma GCC optimize("fp-contract=off")
// TSan instruments the clones' ifunc resolvers, which the dynamic loader runs
// before TSan is initialised (a crash at load): TSan builds keep the default
// clone only.
#if defined(__SANITIZE_THREAD__)
#define CONCLAVE_SAMPLING_CLONES
#else
#define CONCLAVE_SAMPLING_CLONES __attribute__((target_clones("avx2", "default")))
#endif

namespace conclave::engine {
namespace {

using Float8 = float __attribute__((vector_size(32)));
using Uint8x32 = uint32_t __attribute__((vector_size(32)));
using Double4 = double __attribute__((vector_size(32)));

constexpr float kInfinity = std::numeric_limits<float>::infinity();
// Ids per block of block sums: the draw skips whole blocks.
constexpr size_t kWeightBlock = 1024;
// Ids per block whose maximum a top-k scan compares before looking closer.
constexpr size_t kSkipBlock = 64;
// Smallest chunk the top-p walk sorts at a time; doubled while the nucleus
// is not reached.
constexpr size_t kTopPFirstChunk = 64;

using sampling_internal::Candidate;

// Descending logit, then ascending id: a total order, so every selection
// below ends in the same arrangement whatever the standard library. (A type,
// not a function, so that the std algorithms inline it.)
struct BetterOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};
constexpr BetterOrder Better;

[[gnu::always_inline]] inline void Load(const float* p, Float8& v) { std::memcpy(&v, p, sizeof v); }

[[gnu::always_inline]] inline float HorizontalMax(const Float8& v) {
  float m = v[0];
  for (int j = 1; j < 8; ++j) m = v[j] > m ? v[j] : m;
  return m;
}

// max(x[0, 64)).
[[gnu::always_inline]] inline float BlockMax(const float* x) {
  Float8 m, v;
  Load(x, m);
  for (size_t j = 8; j < kSkipBlock; j += 8) {
    Load(x + j, v);
    m = v > m ? v : m;
  }
  return HorizontalMax(m);
}

// A value equal to the maximum of x[0, n), n >= 1, no NaN.
CONCLAVE_SAMPLING_CLONES float MaxOf(const float* x, size_t n) {
  float m = x[0];
  size_t i = 0;
  if (n >= 8) {
    Float8 mv, v;
    Load(x, mv);
    for (i = 8; i + 8 <= n; i += 8) {
      Load(x + i, v);
      mv = v > mv ? v : mv;
    }
    m = HorizontalMax(mv);
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// w[i] = x[i] >= min_x ? e^((x[i] - max) * inv_t) : 0 for i in [0, n), with
// x[i] <= max; block_sums[b] = sum of w over ids [b * 1024, (b + 1) * 1024)
// in a fixed order. Returns the sum of the block sums, in order.
CONCLAVE_SAMPLING_CLONES double ExpWeights(const float* x, size_t n, float max, float inv_t,
                                           float min_x, float* w, double* block_sums) {
  double total = 0.0;
  for (size_t begin = 0, b = 0; begin < n; begin += kWeightBlock, ++b) {
    const size_t end = std::min(n, begin + kWeightBlock);
    Double4 acc0{}, acc1{};
    size_t i = begin;
    for (; i + 8 <= end; i += 8) {
      Float8 v, e;
      Load(x + i, v);
      const Float8 scaled = (v - max) * inv_t;
      FastExpNonPositive<Float8, Uint8x32>(scaled, e);
      e = v >= min_x ? e : Float8{};
      std::memcpy(w + i, &e, sizeof e);
      acc0 += __builtin_convertvector(__builtin_shufflevector(e, e, 0, 1, 2, 3), Double4);
      acc1 += __builtin_convertvector(__builtin_shufflevector(e, e, 4, 5, 6, 7), Double4);
    }
    const Double4 acc = acc0 + acc1;
    double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; i < end; ++i) {
      w[i] = x[i] >= min_x ? FastExpNonPositive((x[i] - max) * inv_t) : 0.0f;
      sum += w[i];
    }
    block_sums[b] = sum;
    total += sum;
  }
  return total;
}

// Writes the k best of x[0, n) (Better order) to out[0, k), best first.
// 1 <= k <= n. A heap of the k best so far; blocks whose maximum cannot enter
// it are skipped, so a pass costs about one vector comparison per id.
CONCLAVE_SAMPLING_CLONES void SelectTop(const float* x, size_t n, size_t k, Candidate* out) {
  for (size_t i = 0; i < k; ++i) out[i] = {x[i], static_cast<int32_t>(i)};
  std::make_heap(out, out + k, Better);  // out[0]: the worst of the k
  float worst = out[0].logit;
  // Ids grow, so an equal logit never beats one already in the heap.
  const auto consider = [&](size_t i) {
    if (!(x[i] > worst)) return;
    std::pop_heap(out, out + k, Better);
    out[k - 1] = {x[i], static_cast<int32_t>(i)};
    std::push_heap(out, out + k, Better);
    worst = out[0].logit;
  };
  size_t i = k;
  for (; i < n && i % kSkipBlock != 0; ++i) consider(i);
  for (; i + kSkipBlock <= n; i += kSkipBlock) {
    if (BlockMax(x + i) <= worst) continue;
    for (size_t j = i; j < i + kSkipBlock; ++j) consider(j);
  }
  for (; i < n; ++i) consider(i);
  std::sort_heap(out, out + k, Better);
}

// Writes {x[i], i} for every x[i] >= cutoff to out, in id order; returns how
// many. Groups of 8 with none are skipped with one vector comparison.
CONCLAVE_SAMPLING_CLONES size_t Gather(const float* x, size_t n, float cutoff, Candidate* out) {
  using Uint64x4 = uint64_t __attribute__((vector_size(32)));
  size_t m = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Float8 v;
    Load(x + i, v);
    const Uint64x4 hit = __builtin_bit_cast(Uint64x4, v >= cutoff);
    if ((hit[0] | hit[1] | hit[2] | hit[3]) == 0) continue;
    for (size_t j = i; j < i + 8; ++j) {
      out[m] = {x[j], static_cast<int32_t>(j)};
      m += x[j] >= cutoff;
    }
  }
  for (; i < n; ++i) {
    out[m] = {x[i], static_cast<int32_t>(i)};
    m += x[i] >= cutoff;
  }
  return m;
}

double SumOf(const std::vector<double>& v) {
  double total = 0.0;
  for (const double x : v) total += x;
  return total;
}

// The smallest float f with f >= v (v finite or -inf).
float FloatAtLeast(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, kInfinity);
  return f;
}

// The largest float f with f <= v.
float FloatAtMost(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = std::nextafter(f, -kInfinity);
  return f;
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  const auto invalid = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (!(p.temperature >= 0.0f && std::isfinite(p.temperature))) {
    return invalid("temperature=", p.temperature, " must be a finite number >= 0");
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return invalid("top_p=", p.top_p, " must be in (0, 1]");
  }
  if (p.top_k < 0) return invalid("top_k=", p.top_k, " must be >= 0 (0 disables it)");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return invalid("min_p=", p.min_p, " must be in [0, 1]");
  }
  if (!(p.repetition_penalty > 0.0f && std::isfinite(p.repetition_penalty))) {
    return invalid("repetition_penalty=", p.repetition_penalty,
                   " must be a finite number > 0 (1 disables it)");
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return invalid("presence_penalty=", p.presence_penalty, " must be in [-2, 2]");
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return invalid("frequency_penalty=", p.frequency_penalty, " must be in [-2, 2]");
  }
  if (p.logprobs < 0 || p.logprobs > kMaxLogprobs) {
    return invalid("logprobs=", p.logprobs, " must be in [0, ", kMaxLogprobs, "]");
  }
  if (p.confidence_top_k < 1 || p.confidence_top_k > kMaxLogprobs) {
    return invalid("confidence_top_k=", p.confidence_top_k, " must be in [1, ", kMaxLogprobs,
                   "]");
  }
  return absl::OkStatus();
}

int32_t Argmax(absl::Span<const float> logits) {
  if (logits.empty()) return 0;
  int32_t best = 0;
  float best_value = logits[0];  // logits[best], kept in a register
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > best_value) {
      best = static_cast<int32_t>(i);
      best_value = logits[i];
    }
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  const absl::Status valid = ValidateSamplingParams(params);
  CHECK(valid.ok()) << "Sampler built from unvalidated params: " << valid;
}

bool Sampler::HasPenalties() const {
  return params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
         params_.frequency_penalty != 0.0f;
}

void Sampler::Penalize(absl::Span<const float> logits, absl::Span<const int32_t> prompt,
                       absl::Span<const int32_t> generated) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  penalized_.assign(logits.begin(), logits.end());
  if (counts_.size() != logits.size()) {
    counts_.assign(vocab, 0);
    seen_.assign(vocab, 0);
    touched_.clear();
    touched_.reserve(vocab);
  }
  const auto mark = [&](int32_t id) {
    CHECK(id >= 0 && id < vocab) << "token " << id << " outside the vocabulary of " << vocab;
    if (!seen_[id]) {
      seen_[id] = 1;
      touched_.push_back(id);
    }
  };
  for (const int32_t id : generated) {
    mark(id);
    ++counts_[id];
  }
  const bool repetition = params_.repetition_penalty != 1.0f;
  if (repetition) {
    for (const int32_t id : prompt) mark(id);
  }
  const float r = params_.repetition_penalty;
  const float limit = std::numeric_limits<float>::max();
  for (const int32_t id : touched_) {
    float v = penalized_[id];
    if (repetition) v = v > 0.0f ? v / r : v * r;
    if (const int32_t count = counts_[id]; count > 0) {
      v -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
    }
    // An extreme repetition penalty can overflow; saturating keeps every
    // later difference of logits finite (+inf - +inf would be NaN).
    penalized_[id] = std::clamp(v, -limit, limit);
    counts_[id] = 0;
    seen_[id] = 0;
  }
  touched_.clear();
}

SampledToken Sampler::Sample(absl::Span<const float> logits, absl::Span<const int32_t> prompt,
                             absl::Span<const int32_t> generated) {
  CHECK(!logits.empty()) << "empty logits row";
  CHECK_LE(logits.size(), static_cast<size_t>(std::numeric_limits<int32_t>::max()));
  const size_t vocab = logits.size();
  weights_.resize(vocab);
  block_sums_.resize((vocab + kWeightBlock - 1) / kWeightBlock);

  // The model's distribution: its top list and log-sum-exp.
  top_size_ = static_cast<int>(
      std::min(vocab, static_cast<size_t>(std::max(params_.confidence_top_k, params_.logprobs))));
  SelectTop(logits.data(), vocab, top_size_, top_);
  const float raw_max = top_[0].logit;
  const double lse =
      raw_max + std::log(ExpWeights(logits.data(), vocab, raw_max, 1.0f, -kInfinity,
                                    weights_.data(), block_sums_.data()));

  SampledToken out;
  const bool penalties = HasPenalties();
  if (penalties) Penalize(logits, prompt, generated);
  if (params_.temperature > 0.0f) {
    out.token = penalties ? Draw(penalized_, MaxOf(penalized_.data(), vocab), false)
                          : Draw(logits, raw_max, true);
  } else if (!penalties) {
    out.token = top_[0].id;  // the first maximum: exactly Argmax(logits)
  } else {
    Candidate best;
    SelectTop(penalized_.data(), vocab, 1, &best);
    out.token = best.id;  // == Argmax(penalized_)
  }

  out.logprob = static_cast<float>(static_cast<double>(logits[out.token]) - lse);
  const int k = std::min(params_.confidence_top_k, top_size_);
  double sum = 0.0;
  for (int i = 0; i < k; ++i) sum += static_cast<double>(top_[i].logit) - lse;
  out.confidence = static_cast<float>(-sum / k);
  const int n_top = std::min(params_.logprobs, top_size_);
  out.top.reserve(n_top);
  for (int i = 0; i < n_top; ++i) {
    out.top.push_back(
        {top_[i].id, static_cast<float>(static_cast<double>(top_[i].logit) - lse)});
  }
  return out;
}

int32_t Sampler::Draw(absl::Span<const float> row, float max, bool raw_weights_reusable) {
  const size_t vocab = row.size();
  const double temperature = params_.temperature;
  // A temperature so small that 1 / T overflows acts as T -> 0+: a uniform
  // draw among the tied maxima (inf would make 0 * inf = NaN at the maximum).
  const float inv_t =
      static_cast<float>(std::min(1.0 / temperature, double{std::numeric_limits<float>::max()}));
  // min-p keeps p >= min_p * p_max, i.e. (logit - max) / T >= ln(min_p).
  const float min_x = params_.min_p > 0.0f
                          ? FloatAtLeast(max + temperature * std::log(double{params_.min_p}))
                          : -kInfinity;
  // 53 random bits -> u in [0, 1), the same on every standard library.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  // The log-sum-exp pass left e^(row - max) in weights_ and block_sums_.
  const bool reuse_raw = raw_weights_reusable && inv_t == 1.0f;

  const bool top_k = params_.top_k > 0 && static_cast<size_t>(params_.top_k) < vocab;
  const bool top_p = params_.top_p < 1.0f;
  if (!top_k && !top_p) {
    // Every token (above min-p) in id order; the walk skips whole blocks.
    double total;
    if (reuse_raw && min_x == -kInfinity) {
      total = SumOf(block_sums_);
    } else {
      total = ExpWeights(row.data(), vocab, max, inv_t, min_x, weights_.data(),
                         block_sums_.data());
    }
    const double r = u * total;
    double cumulative = 0.0;
    for (size_t b = 0; b < block_sums_.size(); ++b) {
      if (!(r < cumulative + block_sums_[b])) {
        cumulative += block_sums_[b];
        continue;
      }
      const size_t end = std::min(vocab, (b + 1) * kWeightBlock);
      for (size_t i = b * kWeightBlock; i < end; ++i) {
        cumulative += weights_[i];
        if (r < cumulative) return static_cast<int32_t>(i);
      }
    }
    // Rounding left r past the last cumulative sum: the last possible token.
    size_t last = vocab - 1;
    while (last > 0 && weights_[last] == 0.0f) --last;
    return static_cast<int32_t>(last);
  }

  candidates_.resize(vocab);
  candidate_weights_.resize(vocab);
  Candidate* c = candidates_.data();
  float* w = candidate_weights_.data();
  const auto weight = [&](float x) { return FastExpNonPositive((x - max) * inv_t); };
  size_t n;  // then c[0, n) are the kept tokens in Better order, w[0, n) their weights
  if (top_k) {
    n = params_.top_k;
    if (n * kSkipBlock <= vocab) {
      SelectTop(row.data(), vocab, n, c);
    } else {
      for (size_t i = 0; i < vocab; ++i) c[i] = {row[i], static_cast<int32_t>(i)};
      std::nth_element(c, c + n, c + vocab, Better);
      std::sort(c, c + n, Better);
    }
    for (size_t i = 0; i < n; ++i) w[i] = weight(c[i].logit);
    if (top_p) {
      double total = 0.0;
      for (size_t i = 0; i < n; ++i) total += w[i];
      const double target = params_.top_p * total;
      double cumulative = 0.0;
      for (size_t i = 0; i < n; ++i) {
        cumulative += w[i];
        if (cumulative >= target) {
          n = i + 1;
          break;
        }
      }
    }
  } else {
    // top-p alone: the nucleus over the whole vocabulary, found in three
    // narrowing steps so that only about the nucleus gets sorted.
    // 1. Tokens with weight below theta = 0.999 (1 - top_p) Z / vocab weigh
    //    less than (1 - top_p) Z together, so the nucleus lies among the
    //    tokens above the logit of theta (less a margin for the approximate
    //    exp): gather those.
    const double z = reuse_raw ? SumOf(block_sums_)
                               : ExpWeights(row.data(), vocab, max, inv_t, -kInfinity,
                                            weights_.data(), block_sums_.data());
    const double theta = 0.999 * (1.0 - params_.top_p) * z / static_cast<double>(vocab);
    const float cutoff = FloatAtMost(max + temperature * (std::log(theta) - 1e-3));
    const size_t m = Gather(row.data(), vocab, cutoff, c);
    // 2. Bucket the gathered tokens by logit (a bucket's tokens all beat the
    //    next bucket's) and keep the buckets up to the one where the weight
    //    reaches the target.
    const double target = params_.top_p * z;
    // scale <= FLT_MAX, so (max - logit) * scale is never 0 * inf = NaN.
    const float scale =
        max > cutoff ? std::min(kTopPBuckets / (max - cutoff), std::numeric_limits<float>::max())
                     : 0.0f;
    const auto bucket = [&](float logit) {
      const float b = (max - logit) * scale;
      return b < kTopPBuckets - 1 ? static_cast<int>(b) : kTopPBuckets - 1;
    };
    bucket_mass_.fill(0.0);
    for (size_t i = 0; i < m; ++i) bucket_mass_[bucket(c[i].logit)] += weights_[c[i].id];
    int last_bucket = kTopPBuckets - 1;
    double mass = 0.0;
    for (int b = 0; b < kTopPBuckets; ++b) {
      mass += bucket_mass_[b];
      if (mass >= target) {
        last_bucket = b;
        break;
      }
    }
    const auto in_head = [&](const Candidate& x) { return bucket(x.logit) <= last_bucket; };
    const size_t head = std::partition(c, c + m, in_head) - c;
    // 3. Sort those and walk them in order. The walk decides; it sorts more
    //    of the gathered tokens on demand in case the bucket sums rounded the
    //    other way.
    std::sort(c, c + head, Better);
    size_t sorted = head;
    double cumulative = 0.0;
    n = m;
    for (size_t i = 0; i < m; ++i) {
      if (i == sorted) {
        const size_t next = std::min(m, std::max(2 * sorted, sorted + kTopPFirstChunk));
        if (next < m) std::nth_element(c + sorted, c + next, c + m, Better);
        std::sort(c + sorted, c + next, Better);
        sorted = next;
      }
      w[i] = weights_[c[i].id];
      cumulative += w[i];
      if (cumulative >= target) {
        n = i + 1;
        break;
      }
    }
    // Rounding can leave `cumulative` a hair short of `target`: then every
    // gathered candidate was walked (and sorted) and all are kept.
  }
  if (min_x > -kInfinity) {
    n = std::partition_point(c, c + n, [&](const Candidate& x) { return x.logit >= min_x; }) - c;
  }
  CHECK_GT(n, 0u) << "every candidate was filtered out";  // the maximum always survives

  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += w[i];
  const double r = u * total;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < n; ++i) {
    if (w[i] <= 0.0f) continue;
    cumulative += w[i];
    last_positive = i;
    if (r < cumulative) return c[i].id;
  }
  return c[last_positive].id;
}

}  // namespace conclave::engine
