#include "kernels/cpu/fp16.h"

#include <bit>
#include <cstdint>

namespace conclave::kernels::cpu {

float Fp16ToFp32(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    // Inf, or NaN: payload moved up and quieted (as vcvtph2ps does).
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: mant * 2^-24. Normalise into an f32 exponent.
    int e = 127 - 15 + 1;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ff) << 13);
  }
  return std::bit_cast<float>(bits);
}

Half Fp32ToFp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) {
    // NaN: quieted, top payload bits kept (vcvtps2ph behaviour).
    return static_cast<Half>(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  }
  // 65520 = 0x477ff000 is halfway between 65504 (odd mantissa) and 2^16,
  // so it and everything above rounds to infinity.
  if (abs >= 0x477ff000u) return static_cast<Half>(sign | 0x7c00);
  if (abs >= 0x38800000u) {  // >= 2^-14: normal half
    uint32_t h = (abs - 0x38000000u) >> 13;
    const uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
    return static_cast<Half>(sign | h);
  }
  // 2^-25 is halfway between 0 and the smallest subnormal; ties go to 0.
  if (abs <= 0x33000000u) return static_cast<Half>(sign);
  // Subnormal half: round(value / 2^-24) to nearest even.
  const uint32_t e = abs >> 23;  // 102..112
  const uint32_t m = (abs & 0x7fffff) | 0x800000;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;  // may carry into 0x400
  return static_cast<Half>(sign | q);
}

float Bf16ToFp32(BHalf h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

BHalf Fp32ToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncated and forced quiet, as ggml_compute_fp32_to_bf16 does.
    return static_cast<BHalf>((x >> 16) | 0x40);
  }
  // Round to nearest even; subnormals are kept, not flushed (ggml likewise).
  return static_cast<BHalf>((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

}  // namespace conclave::kernels::cpu
