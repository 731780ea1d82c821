#include "kernels/cpu/quantize.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {

void QuantizeQ8_0Avx2(const float* x, BlockQ8_0* y, int64_t nb);  // quantize_avx2.cc
void QuantizeQ8_1Avx2(const float* x, BlockQ8_1* y, int64_t nb);

namespace {

// Rounds half to even (the default FP environment), as both
// _mm256_round_ps(v, _MM_ROUND_NEAREST) in ggml's x86 quantize_row_q8_0/q8_1
// and the "+ 12582912.f" trick of ggml's nearest_int do; then saturates to
// int8 like _mm256_packs_epi32/_epi16. NaN becomes -128 (cvtps2dq gives
// INT_MIN, which the packs saturate). Only reachable on non-finite input.
int8_t RoundToInt8(float v) {
  // Adding and removing 1.5 * 2^23 leaves v rounded half to even for
  // |v| < 2^22 (quantized activations are within +-128), and keeps NaN and
  // infinities; unlike std::nearbyint it needs no libm call on plain x86-64.
  // (Without -ffast-math the compiler keeps both roundings.)
  constexpr float kShift = 12582912.0f;
  const float r = (v + kShift) - kShift;
  if (!(r >= -128.0f)) return -128;
  if (r > 127.0f) return 127;
  return static_cast<int8_t>(r);
}

int64_t BlocksOf(int64_t n, int block) {
  CHECK_EQ(n % block, 0) << "row of " << n << " elements is not whole blocks of "
                         << block;
  return n / block;
}

// Max |x| over 32 values. Order does not matter: max is exact.
float AbsMax32(const float* x) {
  float amax = 0.0f;
  // (a > amax ? a : amax) is std::fmax here, NaN included (a NaN never
  // wins), without the libm call.
  for (int j = 0; j < kQK; ++j) {
    const float a = std::fabs(x[j]);
    amax = a > amax ? a : amax;
  }
  return amax;
}

// ggml-cpu/arch/x86/quants.c quantize_row_q8_0 (AVX2 path): d = amax/127
// stored as f16 (round to nearest even, F16C); the multiplier is 127/amax
// (NOT 1/d as in the generic quantize_row_q8_0_ref), q = round-half-even.
void QuantizeQ8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float amax = AbsMax32(x);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = RoundToInt8(x[j] * id);
  }
}

// As QuantizeQ8_0, plus s = f16(d * float(sum q)) with the unrounded f32 d
// (x86 quantize_row_q8_1: GGML_CPU_FP32_TO_FP16(d * hsum_i32_8(...))).
void QuantizeQ8_1(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float amax = AbsMax32(x);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[i].d = Fp32ToFp16(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      y[i].qs[j] = RoundToInt8(x[j] * id);
      sum += y[i].qs[j];
    }
    y[i].s = Fp32ToFp16(d * static_cast<float>(sum));
  }
}

// ggml-quants.c quantize_row_q8_K_ref (x86 ggml-cpu's quantize_row_q8_K
// calls it): the signed value of the first element with the largest |x|
// gives iscale = -127/max; q = min(127, nearest_int(iscale*x)) where
// nearest_int rounds the f32 product half to even; d = 1/iscale (f32).
// An all-zero block gets d = 0 (ggml leaves bsums stale there; we zero them).
void QuantizeQ8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float max = 0.0f;
    float amax = 0.0f;
    for (int j = 0; j < kQKK; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      y[i].d = 0.0f;
      std::memset(y[i].qs, 0, sizeof(y[i].qs));
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQKK; ++j) {
      const float v = iscale * x[j];
      y[i].qs[j] = RoundToInt8(v);
    }
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += y[i].qs[g * 16 + j];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

// Unpacks the 6-bit (scale, min) pair of sub-block j of a Q4_K super-block.
void Q4KScaleMin(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The dequantizers use ggml-quants.c's float expressions and order, so the
// values equal ggml's dequantize_row_* bit for bit.
void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4_1(const BlockQ4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    const float m = Fp16ToFp32(x[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

// Q5_0/Q5_1: bit j of qh (a little-endian u32) is the fifth bit of
// element j; element j+16 takes bit j+16.
uint32_t LoadQh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

void DequantizeQ5_0(const BlockQ5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    const uint32_t qh = LoadQh(x[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int hi0 = ((qh >> j) << 4) & 0x10;
      const int hi1 = (qh >> (j + 12)) & 0x10;
      y[j] = static_cast<float>(((x[i].qs[j] & 0x0F) | hi0) - 16) * d;
      y[j + kQK / 2] = static_cast<float>(((x[i].qs[j] >> 4) | hi1) - 16) * d;
    }
  }
}

void DequantizeQ5_1(const BlockQ5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    const float m = Fp16ToFp32(x[i].m);
    const uint32_t qh = LoadQh(x[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int hi0 = ((qh >> j) << 4) & 0x10;
      const int hi1 = (qh >> (j + 12)) & 0x10;
      y[j] = static_cast<float>((x[i].qs[j] & 0x0F) | hi0) * d + m;
      y[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) | hi1) * d + m;
    }
  }
}

void DequantizeQ8_0(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void DequantizeQ8_1(const BlockQ8_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void DequantizeQ4_K(const BlockQ4_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float dmin = Fp16ToFp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      int sc, m;
      Q4KScaleMin(2 * c, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      Q4KScaleMin(2 * c + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantizeQ6_K(const BlockQ6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int half = 0; half < 2; ++half) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void DequantizeQ8_K(const BlockQ8_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    for (int j = 0; j < kQKK; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
  }
}

}  // namespace

bool IsSupportedWeightType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

GgmlType ActivationTypeFor(GgmlType w) {
  switch (w) {
    case GgmlType::kQ4_0:
    case GgmlType::kQ5_0:
    case GgmlType::kQ8_0:
      return GgmlType::kQ8_0;
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_1:
      return GgmlType::kQ8_1;
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return GgmlType::kQ8_K;
    case GgmlType::kF16:
      return GgmlType::kF16;
    case GgmlType::kBF16:
      return GgmlType::kBF16;
    case GgmlType::kF32:
      return GgmlType::kF32;
    default:
      CHECK(false) << "no CPU dot product for weight type "
                   << static_cast<uint32_t>(w);
      __builtin_unreachable();
  }
}

void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16: {
      const auto* h = static_cast<const Half*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(h[i]);
      return;
    }
    case GgmlType::kBF16: {
      const auto* h = static_cast<const BHalf*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFp32(h[i]);
      return;
    }
    case GgmlType::kQ4_0:
      DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ4_1:
      DequantizeQ4_1(static_cast<const BlockQ4_1*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ5_0:
      DequantizeQ5_0(static_cast<const BlockQ5_0*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ5_1:
      DequantizeQ5_1(static_cast<const BlockQ5_1*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ8_0:
      DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ8_1:
      DequantizeQ8_1(static_cast<const BlockQ8_1*>(src), dst, BlocksOf(n, kQK));
      return;
    case GgmlType::kQ4_K:
      DequantizeQ4_K(static_cast<const BlockQ4_K*>(src), dst, BlocksOf(n, kQKK));
      return;
    case GgmlType::kQ6_K:
      DequantizeQ6_K(static_cast<const BlockQ6_K*>(src), dst, BlocksOf(n, kQKK));
      return;
    case GgmlType::kQ8_K:
      DequantizeQ8_K(static_cast<const BlockQ8_K*>(src), dst, BlocksOf(n, kQKK));
      return;
    default:
      CHECK(false) << "cannot dequantize type " << static_cast<uint32_t>(type);
  }
}

void QuantizeRow(GgmlType type, const float* x, void* dst, int64_t n) {
  static const bool avx2 = CpuHasAvx2FmaF16c();
  if (avx2 && type == GgmlType::kQ8_0) {
    QuantizeQ8_0Avx2(x, static_cast<BlockQ8_0*>(dst), BlocksOf(n, kQK));
    return;
  }
  if (avx2 && type == GgmlType::kQ8_1) {
    QuantizeQ8_1Avx2(x, static_cast<BlockQ8_1*>(dst), BlocksOf(n, kQK));
    return;
  }
  QuantizeRowPortable(type, x, dst, n);
}

void QuantizeRowPortable(GgmlType type, const float* x, void* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16: {
      auto* h = static_cast<Half*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = Fp32ToFp16(x[i]);
      return;
    }
    case GgmlType::kBF16: {
      auto* h = static_cast<BHalf*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = Fp32ToBf16(x[i]);
      return;
    }
    case GgmlType::kQ8_0:
      QuantizeQ8_0(x, static_cast<BlockQ8_0*>(dst), BlocksOf(n, kQK));
      return;
    case GgmlType::kQ8_1:
      QuantizeQ8_1(x, static_cast<BlockQ8_1*>(dst), BlocksOf(n, kQK));
      return;
    case GgmlType::kQ8_K:
      QuantizeQ8_K(x, static_cast<BlockQ8_K*>(dst), BlocksOf(n, kQKK));
      return;
    default:
      CHECK(false) << "type " << static_cast<uint32_t>(type)
                   << " is not an activation type";
  }
}

}  // namespace conclave::kernels::cpu
