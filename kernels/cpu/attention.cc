#include "kernels/cpu/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/fp16.h"

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

}  // namespace

void AttendOneToken(const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  float qh[512];
  float acc[512];
  for (int h = 0; h < params.n_heads; ++h) {
    const int kv_head = h / group;
    for (int i = 0; i < d; ++i) qh[i] = Fp16ToFp32(Fp32ToFp16(q[h * d + i]));
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      float dot = 0.0f;
      for (int i = 0; i < d; ++i) dot += qh[i] * Fp16ToFp32(k[i]);
      const float s = dot * params.score_scale;
      scratch[j] = s;
      if (s > max_score) max_score = s;
    }
    double sum = 0.0;
    for (int64_t j = first; j <= pos; ++j) {
      const float e = expf(scratch[j] - max_score);
      scratch[j] = e;
      sum += e;
    }
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int i = 0; i < d; ++i) acc[i] = 0.0f;
    for (int64_t j = first; j <= pos; ++j) {
      const float p = Fp16ToFp32(Fp32ToFp16(scratch[j] * inv_sum));
      const Half* v = SlotOf(kv.v, kv, block_table, j, kv_head);
      for (int i = 0; i < d; ++i) acc[i] += p * Fp16ToFp32(v[i]);
    }
    for (int i = 0; i < d; ++i) out[h * d + i] = acc[i];
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
