#include "kernels/cpu/attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace attention_internal {

void AttendBf16Portable(const float* q, const KvLayerView& kv,
                        absl::Span<const int32_t> block_table, int64_t pos,
                        const AttentionParams& params, float* out) {
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t w = params.sliding_window;
  const int64_t first = w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
  const int64_t n_vis = pos - first + 1;
  static thread_local std::vector<float> qb, kf, e, acc;
  static thread_local std::vector<int64_t> rows;
  qb.resize(d);
  kf.resize(d);
  e.resize(n_vis);
  acc.resize(d);
  rows.resize(n_vis);
  // Element offset of visible position first + r, at KV head 0.
  for (int64_t r = 0; r < n_vis; ++r) {
    const int64_t j = first + r;
    rows[r] = (int64_t{block_table[j / kv.block_size]} * kv.block_size + j % kv.block_size) *
              kv.n_kv_heads * int64_t{d};
  }
  for (int h = 0; h < params.n_heads; ++h) {
    const int64_t head = int64_t{h / group} * d;
    for (int i = 0; i < d; ++i) qb[i] = Bf16ToFp32(Fp32ToBf16(q[int64_t{h} * d + i]));
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t r = 0; r < n_vis; ++r) {
      const Half* k = kv.k + rows[r] + head;
      float dot = 0.0f;
      for (int i = 0; i < d; ++i) dot += qb[i] * Bf16ToFp32(k[i]);
      e[r] = dot * params.score_scale;
      max_score = std::max(max_score, e[r]);
    }
    float sum = 0.0f;
    for (int64_t r = 0; r < n_vis; ++r) {
      e[r] = std::exp(e[r] - max_score);
      sum += e[r];
    }
    const float inv_sum = 1.0f / sum;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t r = 0; r < n_vis; ++r) {
      const float p = Bf16ToFp32(Fp32ToBf16(e[r] * inv_sum));
      const Half* v = kv.v + rows[r] + head;
      for (int i = 0; i < d; ++i) acc[i] += p * Bf16ToFp32(v[i]);
    }
    std::copy(acc.begin(), acc.end(), out + int64_t{h} * d);
  }
}

}  // namespace attention_internal

bool Bf16AttentionIsVectorised() {
  static const bool enabled =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
      std::getenv("CONCLAVE_NO_AVX512") == nullptr;
  return enabled;
}

void AttendOneTokenBf16(const float* q, const KvLayerView& kv,
                        absl::Span<const int32_t> block_table, int64_t pos,
                        const AttentionParams& params, float* out) {
  if (Bf16AttentionIsVectorised()) {
    attention_internal::AttendBf16Avx512(q, kv, block_table, pos, params, out);
  } else {
    attention_internal::AttendBf16Portable(q, kv, block_table, pos, params, out);
  }
}

}  // namespace conclave::kernels::cpu
