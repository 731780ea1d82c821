// exp(x) for x <= 0 in float, branch-free so that loops over a whole
// vocabulary vectorize: Cody-Waite reduction x = n*ln2 + b, a degree-5
// polynomial for e^b (the constants of ARM optimized-routines' expf, as in
// ggml_v_expf) and 2^n built from exponent bits. Compiled without fused
// multiply-adds (a caller that may target FMA sets
// #pragma GCC optimize("fp-contract=off"), as sampler.cc does), a scalar call
// and every SIMD lane give the same bits on every x86-64 level.
// x < -87 (where e^x < 1.7e-38, below the smallest normal float) gives 0.
// Relative error against std::exp: below 4e-7 on [-87, 0] (tested).
// Reference: std::exp.
#ifndef CONCLAVE_ENGINE_SAMPLING_FAST_EXP_H_
#define CONCLAVE_ENGINE_SAMPLING_FAST_EXP_H_

#include <cstdint>

namespace conclave::engine {
namespace fast_exp_internal {

inline constexpr float kMinArg = -87.0f;
inline constexpr float kShift = 0x1.8p23f;  // adding it rounds to an integer
inline constexpr float kInvLn2 = 0x1.715476p+0f;
inline constexpr float kLn2Hi = 0x1.62e4p-1f;
inline constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
inline constexpr float kC0 = 0x1.0e4020p-7f;
inline constexpr float kC1 = 0x1.573e2ep-5f;
inline constexpr float kC2 = 0x1.555e66p-3f;
inline constexpr float kC3 = 0x1.fffdb6p-2f;
inline constexpr float kC4 = 0x1.ffffecp-1f;
inline constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f

}  // namespace fast_exp_internal

// out = e^x element-wise. F is float with U = uint32_t, or a GCC vector of
// floats with U the vector of uint32_t of the same width (by reference, so
// that 32-byte vectors never cross a function boundary by value).
template <typename F, typename U>
[[gnu::always_inline]] inline void FastExpNonPositive(const F& x, F& out) {
  using namespace fast_exp_internal;
  const F zero{};
  const F clamped = x < zero + kMinArg ? zero + kMinArg : x;
  const F z = clamped * kInvLn2 + kShift;
  const F n = z - kShift;  // round(x / ln2), in [-126, 0]
  const F b = (clamped - n * kLn2Hi) - n * kLn2Lo;
  // The low mantissa bits of z hold n: shifted into the exponent field they
  // make k = 2^n (a normal float, since n >= -126).
  const F k = __builtin_bit_cast(F, (__builtin_bit_cast(U, z) << 23) + kOneBits);
  const F u = b * b;
  const F j = ((kC0 * b + kC1) * u + (kC2 * b + kC3)) * u + kC4 * b;  // e^b - 1
  const F r = k + k * j;
  out = x < zero + kMinArg ? zero : r;
}

inline float FastExpNonPositive(float x) {
  float out;
  FastExpNonPositive<float, uint32_t>(x, out);
  return out;
}

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SAMPLING_FAST_EXP_H_
