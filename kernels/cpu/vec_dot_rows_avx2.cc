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

// Q8_0 x Q8_0 for kRows activation rows (DotQ8_0Q8_0's steps per row).
template <int kRows>
void Q8_0Tile(const BlockQ8_0* w, const uint8_t* x, size_t x_row_bytes, int64_t nb, float* y,
              int64_t y_stride) {
  __m256 acc[kRows];
  for (int t = 0; t < kRows; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dw = F16(w[ib].d);
    const __m256i qw = Load256(w[ib].qs);
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

// Splits the rows into tiles of 8, then one tile of 4, 2 and 1 for the rest.
template <typename Block, template <int> class Tile>
void Rows(const void* vw, const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n, float* y,
          int64_t y_stride) {
  const auto* w = static_cast<const Block*>(vw);
  const int64_t nb = n / kQK;
  int t = 0;
  for (; t + 8 <= n_rows; t += 8) Tile<8>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
  if (t + 4 <= n_rows) {
    Tile<4>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
    t += 4;
  }
  if (t + 2 <= n_rows) {
    Tile<2>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
    t += 2;
  }
  if (t < n_rows) Tile<1>::Run(w, x + t * x_row_bytes, x_row_bytes, nb, y + t * y_stride, y_stride);
}

template <int kRows>
struct Q4_1 {
  static void Run(const BlockQ4_1* w, const uint8_t* x, size_t xb, int64_t nb, float* y, int64_t s) {
    Q4_1Tile<kRows>(w, x, xb, nb, y, s);
  }
};
template <int kRows>
struct Q8_0 {
  static void Run(const BlockQ8_0* w, const uint8_t* x, size_t xb, int64_t nb, float* y, int64_t s) {
    Q8_0Tile<kRows>(w, x, xb, nb, y, s);
  }
};

void RowsQ4_1(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ4_1, Q4_1>(w, x, xb, n_rows, n, y, s);
}
void RowsQ8_0(const void* w, const uint8_t* x, size_t xb, int n_rows, int64_t n, float* y,
              int64_t s) {
  Rows<BlockQ8_0, Q8_0>(w, x, xb, n_rows, n, y, s);
}

}  // namespace

VecDotRowsFn GetVecDotRowsAvx2(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_1: return RowsQ4_1;
    case GgmlType::kQ8_0: return RowsQ8_0;
    default: return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
