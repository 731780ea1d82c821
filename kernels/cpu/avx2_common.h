// Small AVX2 building blocks shared by the x86 kernel files (vec_dot_avx2,
// vec_dot_rows_avx2, vec_dot_rows_avx512). Include only from files compiled
// with -mavx2 -mfma -mf16c (or wider). Everything here has internal linkage
// (inline only so that a file that does not use a helper gets no warning),
// so each file keeps a copy built for its own instruction set (an inline
// function with external linkage could be merged across files compiled for
// different ISAs).
#ifndef CONCLAVE_KERNELS_CPU_AVX2_COMMON_H_
#define CONCLAVE_KERNELS_CPU_AVX2_COMMON_H_

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/fp16.h"

namespace conclave::kernels::cpu {
namespace {

inline float F16(Half h) { return _cvtsh_ss(h); }

// ((x4+x0) + (x6+x2)) + ((x5+x1) + (x7+x3)), ggml's hsum_float_8 order.
inline float HorizontalSum(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// 32 nibbles of 16 bytes as bytes 0..15: low nibbles first, then high.
inline __m256i Nibbles32(const uint8_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both =
      _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Lane k = sum of u[j]*s[j] for j in 4k..4k+3 (u unsigned, s signed bytes;
// pairs stay below int16 saturation for every caller).
inline __m256i DotU8I8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Byte j = 0xFF where bit j of the 32 bits at p (little-endian) is set,
// else 0: the fifth bits of a Q5 block, one per element.
inline __m256i BitsToBytes32(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  // Byte j of the result reads byte j/8 of `bits` ...
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                         0x0202020202020202, 0x0303030303030303));
  // ... and keeps bit j%8 of it.
  const __m256i select =
      _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

inline __m256i Load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

}  // namespace
}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_AVX2_COMMON_H_
