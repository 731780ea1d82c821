// Q4_K matrix products in the float order of llama.cpp's repacked CPU path.
//
// On x86 with AVX2, llama.cpp repacks every Q4_K weight matrix whose row
// count is a multiple of 8 (ggml-cpu repack.cpp, q4_K_8x8_q8_K) and
// multiplies it with its own kernels instead of ggml_vec_dot_q4_K_q8_K:
//  - activation rows [0, n - n % 4) (only when n > 3) are quantized to Q8_K
//    four at a time (ggml_quantize_mat_q8_K_4x8) and go through
//    ggml_gemm_q4_K_8x8_q8_K, which adds each pair of 32-element sub-blocks
//    into the float sums separately (4 fused multiply-adds per super-block);
//  - the other rows are quantized one by one (quantize_row_q8_K) and go
//    through ggml_gemv_q4_K_8x8_q8_K, which adds once per super-block.
// The integer sums are exact in both; only where they meet the floats
// differs. Each output is sum - min_sum, the two accumulated apart. We read
// ggml's x86 code and wrote our own; weights stay in their GGUF layout (the
// interleaving only serves ggml's SIMD loads, it does not change the sums).
#ifndef CONCLAVE_KERNELS_CPU_MATMUL_Q4_K_H_
#define CONCLAVE_KERNELS_CPU_MATMUL_Q4_K_H_

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/model_spec.h"

namespace conclave::kernels::cpu {

// True when llama.cpp on this CPU would multiply `w` through the repacked
// path: Q4_K, rows % 8 == 0, and AVX2+FMA (DetectSimdLevel() != kScalar,
// CpuHasAvx2FmaF16c()).
bool RepackableQ4K(const WeightTensor& w);

// Whether MatMul takes the repacked order for `w`: RepackableQ4K(w) and the
// opt-in CONCLAVE_Q4K_ORDER=repacked. Off by default because ggml's order
// makes a row's result depend on how many rows share the product (groups of
// 4 vs leftovers), which would let batching change a sequence's tokens; the
// engine keeps batch invariance, and this path serves parity experiments
// with Gemma 3 (see docs/parity.md).
bool UsesRepackedQ4K(const WeightTensor& w);

// y[t, r] = dot(W[r, :], x[t, :]) as ggml's repacked Q4_K kernels compute it.
// x: [n_tokens, w.cols()]; y: [n_tokens, w.rows()]. Precondition: w is Q4_K
// (w.cols() % 256 == 0); the row-count and CPU conditions of
// UsesRepackedQ4K are the caller's choice (the arithmetic does not need
// them).
void MatMulQ4KRepacked(const WeightTensor& w, const float* x, float* y, int n_tokens,
                       MatMulScratch& scratch, ThreadPool& pool);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_MATMUL_Q4_K_H_
