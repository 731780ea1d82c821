#include "kernels/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace {

inline const Half* SlotOf(const Half* pool, const KvLayerView& kv,
                          absl::Span<const int32_t> block_table, int64_t j,
                          int kv_head) {
  const int64_t block = block_table[j / kv.block_size];
  const int64_t slot = j % kv.block_size;
  return pool + ((block * kv.block_size + slot) * kv.n_kv_heads + kv_head) *
                    static_cast<int64_t>(kv.head_dim);
}

// Query heads per KV head that AttendOneToken handles (checked by the backend).
constexpr int kMaxGroup = 16;

inline int64_t FirstVisible(int64_t pos, int window) {
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// fp16 <-> fp32 through the compiler's _Float16: F16C instructions inside a
// function compiled for them, libgcc's IEEE conversions otherwise (same
// results, round to nearest even).
CONCLAVE_INLINE float HalfToFloat(Half h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}
CONCLAVE_INLINE float RoundToHalf(float f) { return static_cast<float>(static_cast<_Float16>(f)); }

// out[0..n) = the fp16 values of in, widened (exact). With F16C 8 at a time.
__attribute__((target("avx2,fma,f16c"))) void WidenF16c(const Half* in, float* out,
                                                                        int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}
CONCLAVE_INLINE void WidenPortable(const Half* in, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

// The body of AttendOneToken, for one SIMD level known at compile time (so
// the lane loops unroll and vectorise); instantiated inside a function
// compiled for AVX2+FMA+F16C (hardware fma and half conversions) and in a
// portable one.
template <SimdLevel level, bool kF16c>
CONCLAVE_INLINE void AttendBody(const float* q, const KvLayerView& kv,
                                absl::Span<const int32_t> block_table, int64_t pos,
                                const AttentionParams& params, float* out, float* scratch) {
  constexpr int lanes = LanesOf(level);
  const bool tiny_blas = params.dot_order == F16DotOrder::kTinyBlas;
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  const int64_t n_pos = pos + 1;
  // Positions are processed in whole groups of `lanes` from position 0, as
  // ggml walks the (padded) KV cells; hidden positions count as zeros.
  const int64_t begin = first / lanes * lanes;
  const int64_t end = (pos / lanes + 1) * lanes;
  const int n_acc = tiny_blas || lanes == 1 ? 1 : 4;
  // The `group` query heads that share a KV head are done together, so each
  // K and V row is widened from fp16 once for all of them. Every head's sums
  // keep their own order.
  float qh[kMaxGroup][512];
  float kf[512];
  // Per head: [accumulator, lane, dim]. The inner loop over dims is
  // contiguous, so it vectorises; each (accumulator, lane, dim) still sums
  // its own terms in ggml's order.
  static thread_local std::vector<float> acc_storage;
  const size_t per_head = static_cast<size_t>(n_acc) * lanes * d;
  if (acc_storage.size() < per_head * group) acc_storage.resize(per_head * group);
  for (int kv_head = 0; kv_head < kv.n_kv_heads; ++kv_head) {
    const int h0 = kv_head * group;
    for (int g = 0; g < group; ++g) {
      for (int i = 0; i < d; ++i) qh[g][i] = RoundToHalf(q[(h0 + g) * d + i]);
    }
    // Scores, scaled (ggml_soft_max_ext multiplies kq by the scale).
    // scratch: [group, n_pos]
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      if constexpr (kF16c) {
        WidenF16c(k, kf, d);
      } else {
        WidenPortable(k, kf, d);
      }
      for (int g = 0; g < group; ++g) {
        const float dot = tiny_blas ? TinyBlasDot(level, kf, qh[g], d)
                                    : VecDotF16(level, kf, qh[g], d);
        scratch[g * n_pos + j] = dot * params.score_scale;
      }
    }
    float inv_sum[kMaxGroup];
    for (int g = 0; g < group; ++g) {
      float* sc = scratch + g * n_pos;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = first; j <= pos; ++j) max_score = std::max(max_score, sc[j]);
      // exp(s - max), summed per group of lanes into a double
      // (ggml_vec_soft_max_f32).
      double sum = 0.0;
      for (int64_t c = begin; c < end; c += lanes) {
        float chunk[16];
        for (int l = 0; l < lanes; ++l) {
          const int64_t j = c + l;
          const bool visible = j >= first && j <= pos;
          chunk[l] = visible ? GgmlExpf(level, sc[j] - max_score) : 0.0f;
          if (visible) sc[j] = chunk[l];
        }
        sum += lanes == 1 ? chunk[0] : HalvingSum(chunk, lanes);
      }
      inv_sum[g] = static_cast<float>(1.0 / sum);
    }
    // Probabilities rounded to fp16, then dotted with V over positions: lane
    // j % lanes accumulates p_j * v_j (in vec_dot order, into one of 4
    // accumulators by (j / lanes) % 4). Positions run from 0 over the padded
    // cells ggml uses (a multiple of 256), so there is no leftover tail.
    std::fill(acc_storage.begin(), acc_storage.begin() + per_head * group, 0.0f);
    for (int64_t j = first; j <= pos; ++j) {
      const Half* v = SlotOf(kv.v, kv, block_table, j, kv_head);
      if constexpr (kF16c) {
        WidenF16c(v, kf, d);
      } else {
        WidenPortable(v, kf, d);
      }
      const int l = static_cast<int>(j % lanes);
      const int a = n_acc == 1 ? 0 : static_cast<int>((j / lanes) % 4);
      for (int g = 0; g < group; ++g) {
        const float p = RoundToHalf(scratch[g * n_pos + j] * inv_sum[g]);
        float* row = acc_storage.data() + g * per_head + (static_cast<size_t>(a) * lanes + l) * d;
        for (int i = 0; i < d; ++i) row[i] = __builtin_fmaf(kf[i], p, row[i]);
      }
    }
    for (int g = 0; g < group; ++g) {
      const float* acc = acc_storage.data() + g * per_head;
      auto at = [&](int a, int l, int i) { return acc[(static_cast<size_t>(a) * lanes + l) * d + i]; };
      for (int i = 0; i < d; ++i) {
        float lane_sum[16];
        for (int l = 0; l < lanes; ++l) {
          lane_sum[l] = n_acc == 1 ? at(0, l, i) : (at(0, l, i) + at(2, l, i)) + (at(1, l, i) + at(3, l, i));
        }
        out[(h0 + g) * d + i] = lanes == 1 ? lane_sum[0] : HalvingSum(lane_sum, lanes);
      }
    }
  }
}

__attribute__((target("avx2,fma,f16c"))) void AttendFast(
    SimdLevel level, const float* q, const KvLayerView& kv, absl::Span<const int32_t> block_table,
    int64_t pos, const AttentionParams& params, float* out, float* scratch) {
  if (level == SimdLevel::kAvx512) {
    AttendBody<SimdLevel::kAvx512, true>(q, kv, block_table, pos, params, out, scratch);
  } else {
    AttendBody<SimdLevel::kAvx2, true>(q, kv, block_table, pos, params, out, scratch);
  }
}

void AttendPortable(SimdLevel level, const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  switch (level) {
    case SimdLevel::kAvx512:
      AttendBody<SimdLevel::kAvx512, false>(q, kv, block_table, pos, params, out, scratch);
      break;
    case SimdLevel::kAvx2:
      AttendBody<SimdLevel::kAvx2, false>(q, kv, block_table, pos, params, out, scratch);
      break;
    case SimdLevel::kScalar:
      AttendBody<SimdLevel::kScalar, false>(q, kv, block_table, pos, params, out, scratch);
      break;
  }
}

}  // namespace

void AttendOneToken(const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  static const SimdLevel level = DetectSimdLevel();
  if (level != SimdLevel::kScalar && CpuHasAvx2FmaF16c()) {
    AttendFast(level, q, kv, block_table, pos, params, out, scratch);
  } else {
    AttendPortable(level, q, kv, block_table, pos, params, out, scratch);
  }
}

void AttendOneTokenReference(const float* q, const KvLayerView& kv,
                             absl::Span<const int32_t> block_table,
                             int64_t pos, const AttentionParams& params,
                             float* out) {
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  std::vector<double> scores(pos + 1);
  for (int h = 0; h < params.n_heads; ++h) {
    const int kv_head = h / group;
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      double dot = 0.0;
      for (int i = 0; i < d; ++i) dot += double{q[h * d + i]} * Fp16ToFp32(k[i]);
      scores[j] = dot * params.score_scale;
      max_score = std::max(max_score, scores[j]);
    }
    double sum = 0.0;
    for (int64_t j = first; j <= pos; ++j) {
      scores[j] = std::exp(scores[j] - max_score);
      sum += scores[j];
    }
    for (int i = 0; i < d; ++i) {
      double acc = 0.0;
      for (int64_t j = first; j <= pos; ++j) {
        acc += scores[j] / sum * Fp16ToFp32(SlotOf(kv.v, kv, block_table, j, kv_head)[i]);
      }
      out[h * d + i] = static_cast<float>(acc);
    }
  }
}

}  // namespace conclave::kernels::cpu
