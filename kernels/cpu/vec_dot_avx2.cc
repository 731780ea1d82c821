// AVX2 + FMA + F16C dot products. Each kernel forms the same int32 lanes as
// ggml-cpu/arch/x86/quants.c's AVX2 path (lane k of a 32-element group sums
// elements 4k..4k+3, as maddubs+madd or vpdpbusd do), scales them with the
// same f32 factors, accumulates with FMA in 8 lanes and reduces with the
// same horizontal sum, so results follow llama.cpp's x86 float order.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx2_common.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/vec_dot.h"

namespace conclave::kernels::cpu {
namespace {

// Same for two signed vectors: move the sign of a onto b.
__m256i DotI8I8(__m256i a, __m256i b) {
  return DotU8I8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

float DotQ4_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const __m256 d = _mm256_set1_ps(F16(w[ib].d) * F16(x[ib].d));
    const __m256i qw = _mm256_sub_epi8(Nibbles32(w[ib].qs), _mm256_set1_epi8(8));
    const __m256 q = _mm256_cvtepi32_ps(DotI8I8(qw, Load256(x[ib].qs)));
    acc = _mm256_fmadd_ps(d, q, acc);
  }
  return HorizontalSum(acc);
}

float DotQ4_1Q8_1(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_1*>(vw);
  const auto* x = static_cast<const BlockQ8_1*>(vx);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    // ggml's `summs += m*s` is contracted to an FMA by GCC/Clang at -O3
    // with -mfma; do it explicitly.
    summs = __builtin_fmaf(F16(w[ib].m), F16(x[ib].s), summs);
    const __m256 d = _mm256_mul_ps(_mm256_set1_ps(F16(w[ib].d)), _mm256_set1_ps(F16(x[ib].d)));
    const __m256 q = _mm256_cvtepi32_ps(DotU8I8(Nibbles32(w[ib].qs), Load256(x[ib].qs)));
    acc = _mm256_fmadd_ps(d, q, acc);
  }
  return HorizontalSum(acc) + summs;
}

// ggml_vec_dot_q5_0_q8_0's AVX2 path (taken by AVX-512 builds too: the
// function has no AVX-512 branch): per block, d = d_w*d_x in f32, the 8
// int32 lanes converted to f32 and FMA-accumulated; one hsum_float_8 at the
// end. Weights are signed 5-bit values (nibble | fifth bit << 4) - 16.
float DotQ5_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ5_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const __m256 d = _mm256_set1_ps(F16(w[ib].d) * F16(x[ib].d));
    // Without the fifth bit the value is nibble - 16, i.e. nibble | 0xF0
    // as int8; with it, plain nibble.
    const __m256i no_hi = _mm256_andnot_si256(BitsToBytes32(w[ib].qh),
                                              _mm256_set1_epi8(static_cast<char>(0xF0)));
    const __m256i qw = _mm256_or_si256(Nibbles32(w[ib].qs), no_hi);
    const __m256 q = _mm256_cvtepi32_ps(DotI8I8(qw, Load256(x[ib].qs)));
    acc = _mm256_fmadd_ps(d, q, acc);
  }
  return HorizontalSum(acc);
}

// ggml_vec_dot_q5_1_q8_1's AVX2 path: as Q4_1 (acc += q * (d_w*d_x) with
// FMA, summs += m_w*s_x, result hsum(acc) + summs) with unsigned 5-bit
// weights nibble | fifth bit << 4.
float DotQ5_1Q8_1(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ5_1*>(vw);
  const auto* x = static_cast<const BlockQ8_1*>(vx);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    // ggml's `summs += m*s` is contracted to an FMA (see DotQ4_1Q8_1).
    summs = __builtin_fmaf(F16(w[ib].m), F16(x[ib].s), summs);
    const __m256 d = _mm256_mul_ps(_mm256_set1_ps(F16(w[ib].d)), _mm256_set1_ps(F16(x[ib].d)));
    const __m256i hi = _mm256_and_si256(BitsToBytes32(w[ib].qh), _mm256_set1_epi8(0x10));
    const __m256i qw = _mm256_or_si256(Nibbles32(w[ib].qs), hi);
    const __m256 q = _mm256_cvtepi32_ps(DotU8I8(qw, Load256(x[ib].qs)));
    acc = _mm256_fmadd_ps(q, d, acc);
  }
  return HorizontalSum(acc) + summs;
}

float DotQ8_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ8_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const __m256 d = _mm256_set1_ps(F16(w[ib].d) * F16(x[ib].d));
    const __m256 q = _mm256_cvtepi32_ps(DotI8I8(Load256(w[ib].qs), Load256(x[ib].qs)));
    acc = _mm256_fmadd_ps(d, q, acc);
  }
  return HorizontalSum(acc);
}

float DotQ4_KQ8_K(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_K*>(vw);
  const auto* x = static_cast<const BlockQ8_K*>(vx);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = x[i].d * F16(w[i].d);
    const float dmin = -x[i].d * F16(w[i].dmin);
    const uint8_t* s = w[i].scales;
    int16_t scales[8], mins[8];
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        scales[j] = s[j] & 63;
        mins[j] = s[j + 4] & 63;
      } else {
        scales[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mins[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      }
    }
    // Mins: lane m = mins[2m]*sum32[2m] + mins[2m+1]*sum32[2m+1], where
    // sum32[j] = bsums[2j] + bsums[2j+1] (hadd of the bsums).
    const __m128i b_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].bsums));
    const __m128i b_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].bsums + 8));
    const __m128i sum32 = _mm_hadd_epi16(b_lo, b_hi);
    const __m128i mins16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(mins));
    const __m128i prod = _mm_madd_epi16(mins16, sum32);
    acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

    const uint8_t* q4 = w[i].qs;
    const int8_t* q8 = x[i].qs;
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j, q4 += 32, q8 += 64) {
      const __m256i sc_lo = _mm256_set1_epi16(scales[2 * j]);
      const __m256i sc_hi = _mm256_set1_epi16(scales[2 * j + 1]);
      const __m256i bits = Load256(q4);
      const __m256i lo = _mm256_and_si256(bits, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      const __m256i p_lo = _mm256_madd_epi16(sc_lo, _mm256_maddubs_epi16(lo, Load256(q8)));
      const __m256i p_hi = _mm256_madd_epi16(sc_hi, _mm256_maddubs_epi16(hi, Load256(q8 + 32)));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
  acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
  return HorizontalSum(acc) + _mm_cvtss_f32(acc_m);
}

float DotQ6_KQ8_K(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ6_K*>(vw);
  const auto* x = static_cast<const BlockQ8_K*>(vx);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i m32 = _mm256_set1_epi8(32);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = x[i].d * F16(w[i].d);
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    const int8_t* q8 = x[i].qs;
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, q8 += 128) {
      const __m256i l0 = Load256(ql);
      const __m256i l1 = Load256(ql + 32);
      const __m256i h = Load256(qh);
      // Unsigned 6-bit values 0..63; the -32 offset is applied as 32*q8.
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4),
                          _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4)),
      };
      for (int g = 0; g < 4; ++g) {
        const __m256i y = Load256(q8 + 32 * g);
        const __m256i p16 =
            _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], y), _mm256_maddubs_epi16(m32, y));
        // Elements 0..15 of this 32 use scale 2g (+8*half), 16..31 scale 2g+1.
        const int8_t* sc = w[i].scales + 8 * half + 2 * g;
        const __m256i scale = _mm256_setr_epi16(sc[0], sc[0], sc[0], sc[0], sc[0], sc[0],
                                                sc[0], sc[0], sc[1], sc[1], sc[1], sc[1],
                                                sc[1], sc[1], sc[1], sc[1]);
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p16));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return HorizontalSum(acc);
}

// ggml_vec_dot_f16/f32 on AVX: 4 accumulators of 8 lanes over steps of 32,
// reduced as (a0+a2)+(a1+a3), then ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7));
// the tail is added in double.
float ReduceFour(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  a0 = _mm256_add_ps(a0, a2);
  a1 = _mm256_add_ps(a1, a3);
  a0 = _mm256_add_ps(a0, a1);
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
  return _mm_cvtss_f32(_mm_hadd_ps(_mm_hadd_ps(t, t), t));
}

template <typename Load, typename Scalar>
float DotFloat(int64_t n, Load load, Scalar scalar) {
  __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                 _mm256_setzero_ps()};
  const int64_t np = n & ~int64_t{31};
  for (int64_t i = 0; i < np; i += 32) {
    for (int k = 0; k < 4; ++k) {
      __m256 wv, xv;
      load(i + 8 * k, &wv, &xv);
      a[k] = _mm256_fmadd_ps(wv, xv, a[k]);
    }
  }
  double sum = ReduceFour(a[0], a[1], a[2], a[3]);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(scalar(i));
  return static_cast<float>(sum);
}

float DotF32(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const float*>(vw);
  const auto* x = static_cast<const float*>(vx);
  return DotFloat(
      n,
      [&](int64_t i, __m256* wv, __m256* xv) {
        *wv = _mm256_loadu_ps(w + i);
        *xv = _mm256_loadu_ps(x + i);
      },
      [&](int64_t i) { return w[i] * x[i]; });
}

float DotF16(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const Half*>(vw);
  const auto* x = static_cast<const Half*>(vx);
  return DotFloat(
      n,
      [&](int64_t i, __m256* wv, __m256* xv) {
        *wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        *xv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
      },
      [&](int64_t i) { return F16(w[i]) * F16(x[i]); });
}

__m256 LoadBf16(const BHalf* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

float DotBF16(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BHalf*>(vw);
  const auto* x = static_cast<const BHalf*>(vx);
  return DotFloat(
      n,
      [&](int64_t i, __m256* wv, __m256* xv) {
        *wv = LoadBf16(w + i);
        *xv = LoadBf16(x + i);
      },
      [&](int64_t i) { return Bf16ToFp32(w[i]) * Bf16ToFp32(x[i]); });
}

}  // namespace

VecDotFn GetVecDotAvx2(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_0:
      return DotQ4_0Q8_0;
    case GgmlType::kQ4_1:
      return DotQ4_1Q8_1;
    case GgmlType::kQ5_0:
      return DotQ5_0Q8_0;
    case GgmlType::kQ5_1:
      return DotQ5_1Q8_1;
    case GgmlType::kQ8_0:
      return DotQ8_0Q8_0;
    case GgmlType::kQ4_K:
      return DotQ4_KQ8_K;
    case GgmlType::kQ6_K:
      return DotQ6_KQ8_K;
    case GgmlType::kF32:
      return DotF32;
    case GgmlType::kF16:
      return DotF16;
    case GgmlType::kBF16:
      return DotBF16;
    default:
      return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
