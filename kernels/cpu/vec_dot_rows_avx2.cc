// AVX2 multi-row dot products (see vec_dot_rows.h). Per weight block the
// nibbles / signs and scales are prepared once; each activation row then
// takes the exact steps of the single-row kernel in vec_dot_avx2.cc:
// int32 lanes by maddubs+madd, converted to float, multiplied by the same
// f32 scale product and FMA-accumulated in 8 lanes, reduced by the same
// horizontal sum. Rows are processed in tiles whose accumulators stay in
// registers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx2_common.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/vec_dot_rows.h"

namespace conclave::kernels::cpu {
namespace {

// Q4_1 x Q8_1 for kRows activation rows (DotQ4_1Q8_1's steps per row).
template <int kRows>
void Q4_1Tile(const BlockQ4_1* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
              int64_t y_stride) {
  __m256 acc[kRows];
  float summs[kRows];
  for (int t = 0; t < kRows; ++t) {
    acc[t] = _mm256_setzero_ps();
    summs[t] = 0.0f;
  }
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dw = F16(w[ib].d);
    const float mw = F16(w[ib].m);
    const __m256i nib = Nibbles32(w[ib].qs);
    for (int t = 0; t < kRows; ++t) {
      const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_row_bytes)[ib];
      summs[t] = __builtin_fmaf(mw, F16(xb.s), summs[t]);
      const __m256 d = _mm256_set1_ps(dw * F16(xb.d));
      const __m256 q = _mm256_cvtepi32_ps(DotU8I8(nib, Load256(xb.qs)));
      acc[t] = _mm256_fmadd_ps(d, q, acc[t]);
    }
  }
  for (int t = 0; t < kRows; ++t) y[t * y_stride] = HorizontalSum(acc[t]) + summs[t];
}

// The 32 signed quants of one weight block whose activations are Q8_0
// (the unpacking of DotQ8_0Q8_0, DotQ4_0Q8_0 and DotQ5_0Q8_0).
__m256i SignedQuants(const BlockQ8_0& b) { return Load256(b.qs); }
__m256i SignedQuants(const BlockQ4_0& b) {
  return _mm256_sub_epi8(Nibbles32(b.qs), _mm256_set1_epi8(8));
}
__m256i SignedQuants(const BlockQ5_0& b) {
  const __m256i no_hi =
      _mm256_andnot_si256(BitsToBytes32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
  return _mm256_or_si256(Nibbles32(b.qs), no_hi);
}

// Q8_0, Q4_0 or Q5_0 x Q8_0 for kRows activation rows (the single-row dot's
// steps per row: the weight's |q| and signs are taken once per block).
template <int kRows, typename Block>
void SignedQuantsTile(const Block* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
                      int64_t y_stride) {
  __m256 acc[kRows];
  for (int t = 0; t < kRows; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dw = F16(w[ib].d);
    const __m256i qw = SignedQuants(w[ib]);
    const __m256i abs_w = _mm256_sign_epi8(qw, qw);
    for (int t = 0; t < kRows; ++t) {
      const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_row_bytes)[ib];
      const __m256 d = _mm256_set1_ps(dw * F16(xb.d));
      const __m256i signed_x = _mm256_sign_epi8(Load256(xb.qs), qw);
      const __m256 q = _mm256_cvtepi32_ps(DotU8I8(abs_w, signed_x));
      acc[t] = _mm256_fmadd_ps(d, q, acc[t]);
    }
  }
  for (int t = 0; t < kRows; ++t) y[t * y_stride] = HorizontalSum(acc[t]);
}

// Q5_1 x Q8_1 for kRows activation rows (DotQ5_1Q8_1's steps per row).
template <int kRows>
void Q5_1Tile(const BlockQ5_1* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
              int64_t y_stride) {
  __m256 acc[kRows];
  float summs[kRows];
  for (int t = 0; t < kRows; ++t) {
    acc[t] = _mm256_setzero_ps();
    summs[t] = 0.0f;
  }
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dw = F16(w[ib].d);
    const float mw = F16(w[ib].m);
    const __m256i hi = _mm256_and_si256(BitsToBytes32(w[ib].qh), _mm256_set1_epi8(0x10));
    const __m256i qw = _mm256_or_si256(Nibbles32(w[ib].qs), hi);
    for (int t = 0; t < kRows; ++t) {
      const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_row_bytes)[ib];
      summs[t] = __builtin_fmaf(mw, F16(xb.s), summs[t]);
      const __m256 d = _mm256_set1_ps(dw * F16(xb.d));
      const __m256 q = _mm256_cvtepi32_ps(DotU8I8(qw, Load256(xb.qs)));
      acc[t] = _mm256_fmadd_ps(d, q, acc[t]);
    }
  }
  for (int t = 0; t < kRows; ++t) y[t * y_stride] = HorizontalSum(acc[t]) + summs[t];
}

// Q4_K x Q8_K for kRows activation rows (DotQ4_KQ8_K's steps per row): the
// 6-bit scales and mins and the nibbles of a super-block are unpacked once.
template <int kRows>
void Q4_KTile(const BlockQ4_K* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
              int64_t y_stride) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc[kRows];
  __m128 acc_m[kRows];
  for (int t = 0; t < kRows; ++t) {
    acc[t] = _mm256_setzero_ps();
    acc_m[t] = _mm_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float dw = F16(w[i].d);
    const float dminw = F16(w[i].dmin);
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
    const __m128i mins16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(mins));
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i bits = Load256(w[i].qs + 32 * j);
      lo[j] = _mm256_and_si256(bits, m4);
      hi[j] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
    }
    for (int t = 0; t < kRows; ++t) {
      const BlockQ8_K& xb = reinterpret_cast<const BlockQ8_K*>(x + t * x_row_bytes)[i];
      const float d = xb.d * dw;
      const float dmin = -xb.d * dminw;
      const __m128i b_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums));
      const __m128i b_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums + 8));
      const __m128i prod = _mm_madd_epi16(mins16, _mm_hadd_epi16(b_lo, b_hi));
      acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
      __m256i sumi = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const int8_t* q8 = xb.qs + 64 * j;
        const __m256i p_lo = _mm256_madd_epi16(_mm256_set1_epi16(scales[2 * j]),
                                               _mm256_maddubs_epi16(lo[j], Load256(q8)));
        const __m256i p_hi = _mm256_madd_epi16(_mm256_set1_epi16(scales[2 * j + 1]),
                                               _mm256_maddubs_epi16(hi[j], Load256(q8 + 32)));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < kRows; ++t) {
    __m128 m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    y[t * y_stride] = HorizontalSum(acc[t]) + _mm_cvtss_f32(m);
  }
}

// Q6_K x Q8_K for kRows activation rows (DotQ6_KQ8_K's steps per row): the
// 6-bit quants and the scale vectors of a super-block are built once.
template <int kRows>
void Q6_KTile(const BlockQ6_K* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
              int64_t y_stride) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i m32 = _mm256_set1_epi8(32);
  __m256 acc[kRows];
  for (int t = 0; t < kRows; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float dw = F16(w[i].d);
    // q[4 * half + g]: elements 128 * half + 32 * g .. + 31, unsigned 0..63.
    __m256i q[8], scale[8];
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w[i].ql + 64 * half;
      const __m256i l0 = Load256(ql);
      const __m256i l1 = Load256(ql + 32);
      const __m256i h = Load256(w[i].qh + 32 * half);
      q[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                        _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
      q[4 * half + 1] =
          _mm256_or_si256(_mm256_and_si256(l1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
      q[4 * half + 2] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
      q[4 * half + 3] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
      for (int g = 0; g < 4; ++g) {
        const int8_t* sc = w[i].scales + 8 * half + 2 * g;
        scale[4 * half + g] = _mm256_setr_epi16(sc[0], sc[0], sc[0], sc[0], sc[0], sc[0], sc[0],
                                                sc[0], sc[1], sc[1], sc[1], sc[1], sc[1], sc[1],
                                                sc[1], sc[1]);
      }
    }
    for (int t = 0; t < kRows; ++t) {
      const BlockQ8_K& xb = reinterpret_cast<const BlockQ8_K*>(x + t * x_row_bytes)[i];
      const float d = xb.d * dw;
      __m256i sumi = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k) {
        const __m256i yk = Load256(xb.qs + 32 * k);
        const __m256i p16 =
            _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], yk), _mm256_maddubs_epi16(m32, yk));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale[k], p16));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < kRows; ++t) y[t * y_stride] = HorizontalSum(acc[t]);
}

// Splits the rows into tiles of kMaxTile (8 or 4), then one tile each of
// the smaller powers of two for the rest. kBlockElems: elements per block.
template <typename Block, int kBlockElems, int kMaxTile, template <int> class Tile>
void Rows(const void* vw, const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n, float* y,
          int64_t y_stride) {
  const auto* w = static_cast<const Block*>(vw);
  const int64_t nb = n / kBlockElems;
  int t = 0;
  for (; t + kMaxTile <= n_rows; t += kMaxTile) {
    Tile<kMaxTile>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
  }
  if (kMaxTile > 4 && t + 4 <= n_rows) {
    Tile<4>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
    t += 4;
  }
  if (t + 2 <= n_rows) {
    Tile<2>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
    t += 2;
  }
  if (t < n_rows) Tile<1>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
}

#define CONCLAVE_TILE(Name, Block, Fn)                                                      \
  template <int kRows>                                                                      \
  struct Name {                                                                             \
    static void Run(const Block* w, const uint8_t* x, size_t xb, int64_t nb, float* y,      \
                    int64_t s) {                                                            \
      Fn<kRows>(w, x, xb, nb, y, s);                                                        \
    }                                                                                       \
  };
CONCLAVE_TILE(Q4_0, BlockQ4_0, SignedQuantsTile)
CONCLAVE_TILE(Q4_1, BlockQ4_1, Q4_1Tile)
CONCLAVE_TILE(Q8_0, BlockQ8_0, SignedQuantsTile)
CONCLAVE_TILE(Q5_0, BlockQ5_0, SignedQuantsTile)
CONCLAVE_TILE(Q5_1, BlockQ5_1, Q5_1Tile)
CONCLAVE_TILE(Q4_K, BlockQ4_K, Q4_KTile)
CONCLAVE_TILE(Q6_K, BlockQ6_K, Q6_KTile)
#undef CONCLAVE_TILE

void RowsQ4_0(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ4_0, kQK, 8, Q4_0>(w, x, xb, n_rows, n, y, s);
}
void RowsQ4_1(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ4_1, kQK, 8, Q4_1>(w, x, xb, n_rows, n, y, s);
}
void RowsQ8_0(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ8_0, kQK, 8, Q8_0>(w, x, xb, n_rows, n, y, s);
}
void RowsQ5_0(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ5_0, kQK, 8, Q5_0>(w, x, xb, n_rows, n, y, s);
}
void RowsQ5_1(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ5_1, kQK, 8, Q5_1>(w, x, xb, n_rows, n, y, s);
}
// Tiles of 4: each row keeps 2 accumulators (3 with Q4_K's mins) beside the
// super-block's unpacked quants, within AVX2's 16 registers.
void RowsQ4_K(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ4_K, kQKK, 4, Q4_K>(w, x, xb, n_rows, n, y, s);
}
void RowsQ6_K(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ6_K, kQKK, 4, Q6_K>(w, x, xb, n_rows, n, y, s);
}

}  // namespace

VecDotRowsFn GetVecDotRowsAvx2(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_0: return RowsQ4_0;
    case GgmlType::kQ4_1: return RowsQ4_1;
    case GgmlType::kQ8_0: return RowsQ8_0;
    case GgmlType::kQ5_0: return RowsQ5_0;
    case GgmlType::kQ5_1: return RowsQ5_1;
    case GgmlType::kQ4_K: return RowsQ4_K;
    case GgmlType::kQ6_K: return RowsQ6_K;
    default: return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
