// Scalar reproductions of the float arithmetic order that ggml's CPU backend
// uses on this machine, so that conclave's logits equal llama.cpp's bit for
// bit (not just within a tolerance): a transformer amplifies a one-ulp
// difference at layer 10 into a different greedy token by layer 30.
//
// What ggml does depends on the ISA it was built for (natively, for this
// CPU): AVX-512 (16 float lanes), AVX2+FMA (8 lanes) or neither. Each
// function here names the ggml routine it follows (ggml-cpu vec.h / vec.cpp,
// llamafile sgemm.cpp); we read them and wrote our own code.
#ifndef CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_
#define CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_

#include <cstdint>

namespace conclave::kernels::cpu {

enum class SimdLevel {
  kScalar,  // no AVX2+FMA: plain loops, libm expf
  kAvx2,    // 8 lanes, ggml_v_expf (AVX2 variant)
  kAvx512,  // 16 lanes, ggml_v_expf (AVX-512 variant)
};

// The level ggml picks on this CPU (AVX512F+AVX512DQ, else AVX2+FMA).
// CONCLAVE_SIMD_LEVEL=scalar|avx2|avx512 overrides it (for tests).
SimdLevel DetectSimdLevel();
int LanesOf(SimdLevel level);

// exp(x) as ggml_v_expf computes it at `level` (libm expf for kScalar).
float GgmlExpf(SimdLevel level, float x);

// Sum of lanes[0..n) by pairwise halving (lane i += lane i + n/2, ...), the
// order of _mm512_reduce_add_ps and of ggml's AVX2 horizontal sums.
// n is a power of two.
float HalvingSum(const float* lanes, int n);

// dot(a, b) over n elements the way tinyBLAS (llamafile sgemm) does it for
// f16 x f16 matrices: lane l accumulates a[i]*b[i] for i % lanes == l with
// fused multiply-adds in order of i, then HalvingSum. The inputs are the f16
// values already widened to float. (tinyBLAS needs n % lanes == 0; a tail,
// if any, is folded into the first lanes.)
float TinyBlasDot(SimdLevel level, const float* a, const float* b, int n);

// dot(a, b) the way ggml_vec_dot_f16 does it: 4 accumulators of `lanes`
// (element i into accumulator (i / lanes) % 4, lane i % lanes, by fused
// multiply-add), then (acc0 + acc2) + (acc1 + acc3) and HalvingSum.
// Elements past the last whole group of 4 * lanes go to a double, as ggml's
// leftover loop does.
float VecDotF16(SimdLevel level, const float* a, const float* b, int n);

// Which of the two ggml uses for an f16 matrix product: llamafile's tinyBLAS
// takes it when the product has at least 2 columns (tokens in the step),
// ggml_vec_dot_f16 otherwise.
enum class F16DotOrder { kTinyBlas, kVecDot };
inline F16DotOrder F16DotOrderFor(int64_t step_tokens) {
  return step_tokens >= 2 ? F16DotOrder::kTinyBlas : F16DotOrder::kVecDot;
}

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_
