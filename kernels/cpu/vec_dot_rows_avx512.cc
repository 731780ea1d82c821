// AVX-512 (F, BW, VL, DQ, VNNI) multi-row Q4_1 x Q8_1 dot products: two
// activation rows share one 512-bit register, the low 256 bits holding one
// row's 8 float lanes and the high 256 bits the other's. Each half takes
// exactly the steps of DotQ4_1Q8_1 (vec_dot_avx2.cc): vpdpbusd forms the
// same int32 lanes as maddubs+madd (no int16 saturation is possible with
// nibbles against int8 in [-127, 127]), then convert, multiply by the same
// f32 scale product and FMA-accumulate in block order; the same horizontal
// sum at the end. So every result is bit-identical to the single-row kernel.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx2_common.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/vec_dot_rows.h"

namespace conclave::kernels::cpu {
namespace {

// kPairs pairs of activation rows: x[2p] and x[2p + 1] (equal pointers are
// fine: a lone row rides along twice and its twin's result is dropped).
template <int kPairs>
void Q4_1Pairs(const BlockQ4_1* w, const BlockQ8_1* const* x, int64_t nb, float* const* y) {
  __m512 acc[kPairs];
  float summs[2 * kPairs];
  for (int p = 0; p < kPairs; ++p) acc[p] = _mm512_setzero_ps();
  for (int t = 0; t < 2 * kPairs; ++t) summs[t] = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dw = F16(w[ib].d);
    const float mw = F16(w[ib].m);
    const __m256i nib = Nibbles32(w[ib].qs);
    const __m512i nib2 = _mm512_inserti64x4(_mm512_castsi256_si512(nib), nib, 1);
    for (int p = 0; p < kPairs; ++p) {
      const BlockQ8_1& a = x[2 * p][ib];
      const BlockQ8_1& b = x[2 * p + 1][ib];
      summs[2 * p] = __builtin_fmaf(mw, F16(a.s), summs[2 * p]);
      summs[2 * p + 1] = __builtin_fmaf(mw, F16(b.s), summs[2 * p + 1]);
      const __m512i qx = _mm512_inserti64x4(_mm512_castsi256_si512(Load256(a.qs)), Load256(b.qs), 1);
      const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), nib2, qx));
      const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(dw * F16(a.d)),
                                          _mm256_set1_ps(dw * F16(b.d)), 1);
      acc[p] = _mm512_fmadd_ps(d, q, acc[p]);
    }
  }
  for (int p = 0; p < kPairs; ++p) {
    if (y[2 * p]) *y[2 * p] = HorizontalSum(_mm512_castps512_ps256(acc[p])) + summs[2 * p];
    if (y[2 * p + 1]) {
      *y[2 * p + 1] = HorizontalSum(_mm512_extractf32x8_ps(acc[p], 1)) + summs[2 * p + 1];
    }
  }
}

void RowsQ4_1(const void* vw, const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n,
              float* y, int64_t y_stride) {
  const auto* w = static_cast<const BlockQ4_1*>(vw);
  const int64_t nb = n / kQK;
  const BlockQ8_1* rows[8];
  float* out[8];
  int t = 0;
  auto gather = [&](int count) {  // rows t .. t+count-1, padded to pairs
    for (int i = 0; i < count; ++i) {
      rows[i] = reinterpret_cast<const BlockQ8_1*>(x + (t + i) * x_row_bytes);
      out[i] = y + (t + i) * y_stride;
    }
    if (count % 2) {
      rows[count] = rows[count - 1];
      out[count] = nullptr;
    }
  };
  for (; t + 8 <= n_rows; t += 8) {
    gather(8);
    Q4_1Pairs<4>(w, rows, nb, out);
  }
  const int left = n_rows - t;
  if (left > 0) {
    gather(left);
    switch ((left + 1) / 2) {
      case 1: Q4_1Pairs<1>(w, rows, nb, out); break;
      case 2: Q4_1Pairs<2>(w, rows, nb, out); break;
      case 3: Q4_1Pairs<3>(w, rows, nb, out); break;
      default: Q4_1Pairs<4>(w, rows, nb, out); break;
    }
  }
}

}  // namespace

VecDotRowsFn GetVecDotRowsAvx512(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_1: return RowsQ4_1;
    default: return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
