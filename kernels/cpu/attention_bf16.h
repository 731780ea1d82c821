// Attention of one query token over a bf16 paged KV cache (KvDtype::kBF16).
// llama.cpp has no order to match here (its bit-exact path is fp16), so the
// kernels are written for speed: on CPUs with AVX-512 BF16, q.k is one
// vdpbf16ps per 32 dims and p.v one per 32 dims and pair of positions.
//
// What every path computes (and what the tolerance of its tests rests on):
//  - Q rounded to bf16 (nearest even), K and V as stored;
//  - s_j = score_scale * sum_i q_i k_ji, exact products summed in f32;
//  - softmax in f32: e_j = exp(s_j - max s), p_j = e_j / sum e rounded to
//    bf16;
//  - out = sum_j p_j v_j, exact products summed in f32.
// Only the f32 summation orders differ between the paths (and vdpbf16ps
// treats bf16 subnormals, |x| < 2^-126, as zero), so they agree within a
// few f32 ulps of the terms' magnitudes, not bit for bit.
#ifndef CONCLAVE_KERNELS_CPU_ATTENTION_BF16_H_
#define CONCLAVE_KERNELS_CPU_ATTENTION_BF16_H_

#include <cstdint>

#include "absl/types/span.h"
#include "kernels/cpu/attention.h"

namespace conclave::kernels::cpu {

// AttendOneToken's contract for kv.dtype == kBF16 (params.dot_order is
// ignored). Any head_dim; n_heads / n_kv_heads <= 16. Uses per-thread
// scratch.
void AttendOneTokenBf16(const float* q, const KvLayerView& kv,
                        absl::Span<const int32_t> block_table, int64_t pos,
                        const AttentionParams& params, float* out);

// True when AttendOneTokenBf16 takes the AVX-512 BF16 path on this CPU
// (avx512f/bw/vl/bf16, and CONCLAVE_NO_AVX512 unset).
bool Bf16AttentionIsVectorised();

namespace attention_internal {
// For tests: the portable (scalar) path and, where the CPU has it, the
// AVX-512 BF16 one, regardless of the process-wide choice.
void AttendBf16Portable(const float* q, const KvLayerView& kv,
                        absl::Span<const int32_t> block_table, int64_t pos,
                        const AttentionParams& params, float* out);
void AttendBf16Avx512(const float* q, const KvLayerView& kv,
                      absl::Span<const int32_t> block_table, int64_t pos,
                      const AttentionParams& params, float* out);
}  // namespace attention_internal

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_ATTENTION_BF16_H_
