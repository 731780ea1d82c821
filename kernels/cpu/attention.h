// Causal attention of one query token over a sequence's paged KV cache, the
// way llama.cpp's CPU backend (non-flash path) computes it, bit for bit: Q
// rounded to fp16 and dotted with fp16 K in tinyBLAS lane order; softmax with
// ggml's SIMD exp, summed per lane group into a double; probabilities rounded
// to fp16 and dotted with fp16 V in tinyBLAS lane order (see simd_order.h).
// A bf16 cache (KvDtype::kBF16) takes its own kernels (attention_bf16.h): no
// llama.cpp order to follow there, so they are free to use vdpbf16ps.
#ifndef CONCLAVE_KERNELS_CPU_ATTENTION_H_
#define CONCLAVE_KERNELS_CPU_ATTENTION_H_

#include <cstdint>

#include "absl/types/span.h"
#include "kernels/backend.h"
#include "kernels/cpu/simd_order.h"
#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// One layer's K or V pool: [num_blocks, block_size, n_kv_heads, head_dim]
// 16-bit elements, fp16 or bf16 bits as `dtype` says.
struct KvLayerView {
  const Half* k = nullptr;
  const Half* v = nullptr;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  KvDtype dtype = KvDtype::kF16;
};

struct AttentionParams {
  int n_heads = 0;
  float score_scale = 1.0f;  // applied to q.k before the softmax
  int sliding_window = 0;    // 0: full causal; else keys with pos - j >= w hidden
  // The summation order of the q.k and p.v products; ggml's depends on how
  // many tokens the step has (see simd_order.h).
  F16DotOrder dot_order = F16DotOrder::kTinyBlas;
};

// out[h, :] = sum_j softmax_j(score_scale * q[h] . K[j, h/g]) V[j, h/g] over
// key positions j <= pos (and pos - j < sliding_window when set), where
// g = n_heads / n_kv_heads (grouped-query attention). With a bf16 cache this
// is AttendOneTokenBf16 (params.dot_order is then ignored).
// q: [n_heads, head_dim]; out: [n_heads, head_dim];
// block_table covers positions 0..pos; n_heads / n_kv_heads <= 16;
// scratch: at least (pos + 1) * (n_heads / n_kv_heads) floats.
void AttendOneToken(const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch);

// Float64 reference with no rounding of Q or the probabilities (K and V as
// stored, in either dtype).
void AttendOneTokenReference(const float* q, const KvLayerView& kv,
                             absl::Span<const int32_t> block_table,
                             int64_t pos, const AttentionParams& params,
                             float* out);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_ATTENTION_H_
