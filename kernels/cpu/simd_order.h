// Scalar reproductions of the float arithmetic order that ggml's CPU backend
// uses on this machine, so that conclave's logits equal llama.cpp's bit for
// bit (not just within a tolerance): a transformer amplifies a one-ulp
// difference at layer 10 into a different greedy token by layer 30.
//
// What ggml does depends on the ISA it was built for (natively, for this
// CPU): AVX-512 (16 float lanes), AVX2+FMA (8 lanes) or neither. Each
// function here names the ggml routine it follows (ggml-cpu vec.h / vec.cpp,
// llamafile sgemm.cpp); we read them and wrote our own code.
//
// The functions are inline so that a caller compiled for FMA (a function
// with __attribute__((target("fma")))) gets hardware fused multiply-adds
// instead of libm calls; the results are the same either way.
#ifndef CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_
#define CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#define CONCLAVE_INLINE inline __attribute__((always_inline))

namespace conclave::kernels::cpu {

enum class SimdLevel {
  kScalar,  // no AVX2+FMA: plain loops, libm expf
  kAvx2,    // 8 lanes, ggml_v_expf (AVX2 variant)
  kAvx512,  // 16 lanes, ggml_v_expf (AVX-512 variant)
};

// The level ggml picks on this CPU (AVX512F+AVX512DQ, else AVX2+FMA).
// CONCLAVE_SIMD_LEVEL=scalar|avx2|avx512 overrides it (for tests).
SimdLevel DetectSimdLevel();
// True when the CPU has AVX2, FMA and F16C (the fast kernels' target).
bool CpuHasAvx2FmaF16c();

constexpr int LanesOf(SimdLevel level) {
  return level == SimdLevel::kAvx512 ? 16 : level == SimdLevel::kAvx2 ? 8 : 1;
}

namespace simd_internal {

// Constants of ggml_v_expf (after ARM's optimized-routines expf).
inline constexpr float kShift = 0x1.8p23f;
inline constexpr float kInvLn2 = 0x1.715476p+0f;
inline constexpr float kLn2Hi = 0x1.62e4p-1f;
inline constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
inline constexpr float kC0 = 0x1.0e4020p-7f;
inline constexpr float kC1 = 0x1.573e2ep-5f;
inline constexpr float kC2 = 0x1.555e66p-3f;
inline constexpr float kC3 = 0x1.fffdb6p-2f;
inline constexpr float kC4 = 0x1.ffffecp-1f;

CONCLAVE_INLINE float Bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
CONCLAVE_INLINE uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// AVX-512 variant: polynomial includes the 1, result j * 2^n (vscalefps);
// |n| > 192 saturates to 0 or inf.
CONCLAVE_INLINE float ExpfAvx512(float x) {
  const float z = __builtin_fmaf(x, kInvLn2, kShift);
  const float n = z - kShift;
  const float b = __builtin_fmaf(-n, kLn2Lo, __builtin_fmaf(-n, kLn2Hi, x));
  const float u = b * b;
  const float j = __builtin_fmaf(
      __builtin_fmaf(__builtin_fmaf(kC0, b, kC1), u, __builtin_fmaf(kC2, b, kC3)), u,
      __builtin_fmaf(kC4, b, 1.0f));
  if (!(std::fabs(n) <= 192.0f)) return n <= 0.0f ? 0.0f : INFINITY;
  const int e = static_cast<int>(n);
  // j * 2^e is exact while the result stays normal.
  if (e >= -126 && e <= 127) return j * Bits(static_cast<uint32_t>(e + 127) << 23);
  return std::ldexp(j, e);
}

// AVX2 variant: polynomial without the 1, result k + k*j with k = 2^n built
// from the exponent bits of z; special scaling when |n| > 126.
CONCLAVE_INLINE float ExpfAvx2(float x) {
  const float z = __builtin_fmaf(x, kInvLn2, kShift);
  const float n = z - kShift;
  const float b = __builtin_fmaf(-n, kLn2Lo, __builtin_fmaf(-n, kLn2Hi, x));
  const uint32_t e = Bits(z) << 23;
  const float k = Bits(e + Bits(1.0f));
  const float u = b * b;
  const float j = __builtin_fmaf(
      __builtin_fmaf(__builtin_fmaf(kC0, b, kC1), u, __builtin_fmaf(kC2, b, kC3)), u, kC4 * b);
  if (!(std::fabs(n) > 126.0f)) return __builtin_fmaf(j, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = Bits(g + 0x7f000000u);
  const float s2 = Bits(e - g);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  return __builtin_fmaf(s2, j, s2) * s1;
}

}  // namespace simd_internal

// exp(x) as ggml_v_expf computes it at `level` (libm expf for kScalar).
CONCLAVE_INLINE float GgmlExpf(SimdLevel level, float x) {
  switch (level) {
    case SimdLevel::kAvx512: return simd_internal::ExpfAvx512(x);
    case SimdLevel::kAvx2: return simd_internal::ExpfAvx2(x);
    case SimdLevel::kScalar: break;
  }
  return expf(x);
}

// Sum of lanes[0..n) by pairwise halving (lane i += lane i + n/2, ...), the
// order of _mm512_reduce_add_ps and of ggml's AVX2 horizontal sums.
// n is a power of two, at most 16.
CONCLAVE_INLINE float HalvingSum(const float* lanes, int n) {
  float t[16];
  for (int i = 0; i < n; ++i) t[i] = lanes[i];
  for (int width = n / 2; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) t[i] = t[i + width] + t[i];
  }
  return t[0];
}

// dot(a, b) over n elements the way tinyBLAS (llamafile sgemm) does it for
// f16 x f16 matrices: lane l accumulates a[i]*b[i] for i % lanes == l with
// fused multiply-adds in order of i, then HalvingSum. The inputs are the f16
// values already widened to float. (tinyBLAS needs n % lanes == 0; a tail,
// if any, is folded into the first lanes.)
CONCLAVE_INLINE float TinyBlasDot(SimdLevel level, const float* a, const float* b, int n) {
  const int lanes = LanesOf(level);
  if (lanes == 1) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
    return static_cast<float>(sum);
  }
  float acc[16] = {};
  int i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (int l = 0; l < lanes; ++l) acc[l] = __builtin_fmaf(a[i + l], b[i + l], acc[l]);
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] = __builtin_fmaf(a[i], b[i], acc[l]);
  return HalvingSum(acc, lanes);
}

// dot(a, b) the way ggml_vec_dot_f16 does it: 4 accumulators of `lanes`
// (element i into accumulator (i / lanes) % 4, lane i % lanes, by fused
// multiply-add), then (acc0 + acc2) + (acc1 + acc3) and HalvingSum.
// Elements past the last whole group of 4 * lanes go to a double, as ggml's
// leftover loop does.
CONCLAVE_INLINE float VecDotF16(SimdLevel level, const float* a, const float* b, int n) {
  const int lanes = LanesOf(level);
  if (lanes == 1) return TinyBlasDot(level, a, b, n);
  const int step = 4 * lanes;
  const int whole = n / step * step;
  float acc[4][16] = {};
  for (int i = 0; i < whole; i += step) {
    for (int r = 0; r < 4; ++r) {
      for (int l = 0; l < lanes; ++l) {
        acc[r][l] = __builtin_fmaf(a[i + r * lanes + l], b[i + r * lanes + l], acc[r][l]);
      }
    }
  }
  float sum[16];
  for (int l = 0; l < lanes; ++l) sum[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  double total = HalvingSum(sum, lanes);
  for (int i = whole; i < n; ++i) total += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(total);
}

// Which of the two ggml uses for an f16 matrix product: llamafile's tinyBLAS
// takes it when the product has at least 2 columns (tokens in the step),
// ggml_vec_dot_f16 otherwise.
enum class F16DotOrder { kTinyBlas, kVecDot };
inline F16DotOrder F16DotOrderFor(int64_t step_tokens) {
  return step_tokens >= 2 ? F16DotOrder::kTinyBlas : F16DotOrder::kVecDot;
}

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_SIMD_ORDER_H_
