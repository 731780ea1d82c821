// AVX2 quantizers for the Q8_0 and Q8_1 activation blocks, byte-identical
// to the portable ones in quantize.cc (which follow ggml's x86
// quantize_row_q8_0 / q8_1): max |x| (a NaN never wins), d = amax / 127 and
// the multiplier 127 / amax in f32, round half to even, saturation to int8
// as the packs instructions do (NaN becomes -128), and for Q8_1
// s = f16(d * float(sum of the stored quants)).
#include <immintrin.h>

#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {
namespace {

inline Half ToHalf(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

// The 32 quants of one block, and max |x| as the block's amax.
struct Block32 {
  __m256i q;
  float amax;
  float d;
};

inline Block32 QuantizeBlock(const float* x) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    // max(a, m) returns m when a is NaN, as the scalar a > amax ? a : amax.
    m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[i]), m);
  }
  __m128 h = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  Block32 out;
  out.amax = _mm_cvtss_f32(h);
  out.d = out.amax / 127.0f;
  const float id = out.amax != 0.0f ? 127.0f / out.amax : 0.0f;
  const __m256 mul = _mm256_set1_ps(id);
  __m256i i32[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], mul),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    i32[i] = _mm256_cvtps_epi32(r);
  }
  // packs interleave 128-bit lanes; the permute restores element order.
  const __m256i i16a = _mm256_packs_epi32(i32[0], i32[1]);
  const __m256i i16b = _mm256_packs_epi32(i32[2], i32[3]);
  const __m256i i8 = _mm256_packs_epi16(i16a, i16b);
  out.q = _mm256_permutevar8x32_epi32(i8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  return out;
}

// Sum of the 32 signed bytes of q (exact).
inline int SumBytes(__m256i q) {
  const __m256i biased = _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
  const __m256i sad = _mm256_sad_epu8(biased, _mm256_setzero_si256());  // 4 x u64
  const __m128i s = _mm_add_epi64(_mm256_extracti128_si256(sad, 1), _mm256_castsi256_si128(sad));
  const int64_t total = _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
  return static_cast<int>(total - 32 * 128);
}

}  // namespace

void QuantizeQ8_0Avx2(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const Block32 b = QuantizeBlock(x);
    y[i].d = ToHalf(b.d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), b.q);
  }
}

void QuantizeQ8_1Avx2(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const Block32 b = QuantizeBlock(x);
    y[i].d = ToHalf(b.d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), b.q);
    y[i].s = ToHalf(b.d * static_cast<float>(SumBytes(b.q)));
  }
}

}  // namespace conclave::kernels::cpu
