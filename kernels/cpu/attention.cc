#include "kernels/cpu/attention.h"

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

// The body of AttendOneToken; instantiated twice below, once inside a
// function compiled for AVX2+FMA+F16C (hardware fma and half conversions)
// and once portable.
CONCLAVE_INLINE void AttendBody(SimdLevel level, const float* q, const KvLayerView& kv,
                                absl::Span<const int32_t> block_table, int64_t pos,
                                const AttentionParams& params, float* out, float* scratch) {
  const int lanes = LanesOf(level);
  const bool tiny_blas = params.dot_order == F16DotOrder::kTinyBlas;
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  // Positions are processed in whole groups of `lanes` from position 0, as
  // ggml walks the (padded) KV cells; hidden positions count as zeros.
  const int64_t begin = first / lanes * lanes;
  const int64_t end = (pos / lanes + 1) * lanes;
  float qh[512];
  float kf[512];
  // [accumulator, lane, dim]: the inner loop over dims is contiguous, so it
  // vectorises; each (accumulator, lane, dim) still sums its own terms in
  // ggml's order.
  static thread_local float acc[4][16][512];
  for (int h = 0; h < params.n_heads; ++h) {
    const int kv_head = h / group;
    for (int i = 0; i < d; ++i) qh[i] = RoundToHalf(q[h * d + i]);
    // Scores, scaled (ggml_soft_max_ext multiplies kq by the scale).
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      for (int i = 0; i < d; ++i) kf[i] = HalfToFloat(k[i]);
      const float dot = tiny_blas ? TinyBlasDot(level, kf, qh, d) : VecDotF16(level, kf, qh, d);
      const float s = dot * params.score_scale;
      scratch[j] = s;
      if (s > max_score) max_score = s;
    }
    // exp(s - max), summed per group of lanes into a double
    // (ggml_vec_soft_max_f32).
    double sum = 0.0;
    for (int64_t g = begin; g < end; g += lanes) {
      float chunk[16];
      for (int l = 0; l < lanes; ++l) {
        const int64_t j = g + l;
        const bool visible = j >= first && j <= pos;
        chunk[l] = visible ? GgmlExpf(level, scratch[j] - max_score) : 0.0f;
        if (visible) scratch[j] = chunk[l];
      }
      sum += lanes == 1 ? chunk[0] : HalvingSum(chunk, lanes);
    }
    const float inv_sum = static_cast<float>(1.0 / sum);
    // Probabilities rounded to fp16, then dotted with V over positions: lane
    // j % lanes accumulates p_j * v_j (in vec_dot order, into one of 4
    // accumulators by (j / lanes) % 4). Positions run from 0 over the padded
    // cells ggml uses (a multiple of 256), so there is no leftover tail.
    const int n_acc = tiny_blas || lanes == 1 ? 1 : 4;
    for (int a = 0; a < n_acc; ++a) {
      for (int l = 0; l < lanes; ++l) {
        for (int i = 0; i < d; ++i) acc[a][l][i] = 0.0f;
      }
    }
    for (int64_t j = first; j <= pos; ++j) {
      const float p = RoundToHalf(scratch[j] * inv_sum);
      const Half* v = SlotOf(kv.v, kv, block_table, j, kv_head);
      const int l = static_cast<int>(j % lanes);
      const int a = n_acc == 1 ? 0 : static_cast<int>((j / lanes) % 4);
      float* row = acc[a][l];
      for (int i = 0; i < d; ++i) row[i] = __builtin_fmaf(HalfToFloat(v[i]), p, row[i]);
    }
    for (int i = 0; i < d; ++i) {
      float lane_sum[16];
      for (int l = 0; l < lanes; ++l) {
        lane_sum[l] = n_acc == 1 ? acc[0][l][i]
                                 : (acc[0][l][i] + acc[2][l][i]) + (acc[1][l][i] + acc[3][l][i]);
      }
      out[h * d + i] = lanes == 1 ? lane_sum[0] : HalvingSum(lane_sum, lanes);
    }
  }
}

__attribute__((target("avx2,fma,f16c"))) void AttendFast(
    SimdLevel level, const float* q, const KvLayerView& kv, absl::Span<const int32_t> block_table,
    int64_t pos, const AttentionParams& params, float* out, float* scratch) {
  AttendBody(level, q, kv, block_table, pos, params, out, scratch);
}

void AttendPortable(SimdLevel level, const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  AttendBody(level, q, kv, block_table, pos, params, out, scratch);
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
