// AVX-512 (F, BW, VL, DQ, VNNI) packed multi-row kernels for Q4_1 x Q8_1 and
// Q8_0 x Q8_0 (see vec_dot_packed.h). Each activation row takes exactly the
// steps of its single-row AVX2 kernel (vec_dot_avx2.cc) in one 256-bit half
// of a register: vpdpbusd forms the same int32 lanes as maddubs + madd (no
// int16 saturation is possible for these operands), then convert, multiply
// by the same f32 scale product (d_w * d_x) and FMA-accumulate in block
// order; Q4_1's m_w * s_x term is the same scalar fma chain, one lane per
// row; the same horizontal sum at the end.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx2_common.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/vec_dot_packed.h"

namespace conclave::kernels::cpu {
namespace {

constexpr int kPairs = PackedRowsKernel::kGroupRows / 2;

// One weight block's worth of a packed group. Pair p holds rows 2p (low 256
// bits) and 2p + 1 (high 256 bits); rows past n_rows repeat the last row.
struct PackedQ8_1 {
  int8_t qs[kPairs][64];  // the two rows' 32 quants
  float d[kPairs][16];    // d of row 2p in lanes 0-7, of row 2p + 1 in 8-15
  float s[8];             // s of each row (Q8_1's d * sum(qs))
  float pad[8];           // keeps the struct a multiple of 64 bytes
};
static_assert(sizeof(PackedQ8_1) % 64 == 0);

struct PackedQ8_0 {
  int8_t qs[kPairs][64];
  float d[kPairs][16];
};
static_assert(sizeof(PackedQ8_0) % 64 == 0);

template <typename Packed>
size_t GroupBytes(int64_t n) {
  return static_cast<size_t>(n / kQK) * sizeof(Packed);
}

// The row of the group that pair p's half h holds.
inline int RowOf(int p, int h, int n_rows) {
  const int r = 2 * p + h;
  return r < n_rows ? r : n_rows - 1;
}

// Block `ib` of every row of the group into `o`: each pair's 32 + 32 quants
// and their d, widened to f32 and repeated over the half's 8 lanes.
template <typename Block, typename Packed>
void PackPairs(const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t ib, Packed& o) {
  for (int p = 0; p < kPairs; ++p) {
    for (int h = 0; h < 2; ++h) {
      const Block& b = reinterpret_cast<const Block*>(x + RowOf(p, h, n_rows) * x_row_bytes)[ib];
      std::memcpy(o.qs[p] + 32 * h, b.qs, 32);
      for (int l = 0; l < 8; ++l) o.d[p][8 * h + l] = F16(b.d);
    }
  }
}

void PackQ8_1(const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n, uint8_t* group) {
  auto* out = reinterpret_cast<PackedQ8_1*>(group);
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    PackedQ8_1& o = out[ib];
    PackPairs<BlockQ8_1>(x, x_row_bytes, n_rows, ib, o);
    for (int r = 0; r < 8; ++r) {
      o.s[r] = F16(reinterpret_cast<const BlockQ8_1*>(x + (r < n_rows ? r : n_rows - 1) * x_row_bytes)[ib].s);
      o.pad[r] = 0.0f;
    }
  }
}

void PackQ8_0(const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n, uint8_t* group) {
  auto* out = reinterpret_cast<PackedQ8_0*>(group);
  for (int64_t ib = 0; ib < n / kQK; ++ib) PackPairs<BlockQ8_0>(x, x_row_bytes, n_rows, ib, out[ib]);
}

// Writes the results of the first n_rows rows of a group.
template <int kP>
inline void Store(const __m512* acc, const float* summs, int n_rows, float* y, int64_t y_stride) {
  for (int p = 0; p < kP; ++p) {
    for (int h = 0; h < 2 && 2 * p + h < n_rows; ++h) {
      const __m256 half = h == 0 ? _mm512_castps512_ps256(acc[p]) : _mm512_extractf32x8_ps(acc[p], 1);
      y[(2 * p + h) * y_stride] = HorizontalSum(half) + (summs ? summs[2 * p + h] : 0.0f);
    }
  }
}

// One group against one Q4_1 weight row; kP pairs hold the group's rows.
template <int kP>
void Q4_1Group(const BlockQ4_1* w, const PackedQ8_1* x, int64_t nb, int n_rows, float* y,
               int64_t y_stride) {
  __m512 acc[kP];
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
  __m256 summs = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 dw = _mm512_set1_ps(F16(w[ib].d));
    summs = _mm256_fmadd_ps(_mm256_set1_ps(F16(w[ib].m)), _mm256_loadu_ps(x[ib].s), summs);
    const __m256i nib = Nibbles32(w[ib].qs);
    const __m512i nib2 = _mm512_inserti64x4(_mm512_castsi256_si512(nib), nib, 1);
    for (int p = 0; p < kP; ++p) {
      const __m512i qx = _mm512_loadu_si512(x[ib].qs[p]);
      const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), nib2, qx));
      const __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps(x[ib].d[p]));
      acc[p] = _mm512_fmadd_ps(d, q, acc[p]);
    }
  }
  float s[8];
  _mm256_storeu_ps(s, summs);
  Store<kP>(acc, s, n_rows, y, y_stride);
}

// One group against one Q8_0 weight row. |w| against x with w's sign
// applied (what vpsignb does in the AVX2 kernel; where w = 0 the product is
// 0 either way).
template <int kP>
void Q8_0Group(const BlockQ8_0* w, const PackedQ8_0* x, int64_t nb, int n_rows, float* y,
               int64_t y_stride) {
  __m512 acc[kP];
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 dw = _mm512_set1_ps(F16(w[ib].d));
    const __m256i qw = Load256(w[ib].qs);
    const __m256i abs_w = _mm256_abs_epi8(qw);
    const __m512i abs_w2 = _mm512_inserti64x4(_mm512_castsi256_si512(abs_w), abs_w, 1);
    const uint64_t neg32 = _mm256_movepi8_mask(qw);
    const __mmask64 neg = neg32 | (neg32 << 32);
    for (int p = 0; p < kP; ++p) {
      const __m512i qx = _mm512_loadu_si512(x[ib].qs[p]);
      const __m512i signed_x = _mm512_mask_sub_epi8(qx, neg, _mm512_setzero_si512(), qx);
      const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), abs_w2, signed_x));
      const __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps(x[ib].d[p]));
      acc[p] = _mm512_fmadd_ps(d, q, acc[p]);
    }
  }
  Store<kP>(acc, nullptr, n_rows, y, y_stride);
}

template <typename Block, typename Packed, template <int> class Group>
void Dot(const void* vw, const uint8_t* packed, int n_rows, int64_t n, float* y,
         int64_t y_stride) {
  const auto* w = static_cast<const Block*>(vw);
  const int64_t nb = n / kQK;
  const auto* x = reinterpret_cast<const Packed*>(packed);
  for (int t = 0; t < n_rows; t += PackedRowsKernel::kGroupRows, x += nb) {
    const int rows = n_rows - t < PackedRowsKernel::kGroupRows ? n_rows - t
                                                               : PackedRowsKernel::kGroupRows;
    float* yt = y + t * y_stride;
    switch ((rows + 1) / 2) {
      case 1: Group<1>::Run(w, x, nb, rows, yt, y_stride); break;
      case 2: Group<2>::Run(w, x, nb, rows, yt, y_stride); break;
      case 3: Group<3>::Run(w, x, nb, rows, yt, y_stride); break;
      default: Group<4>::Run(w, x, nb, rows, yt, y_stride); break;
    }
  }
}

template <int kP>
struct Q4_1G {
  static void Run(const BlockQ4_1* w, const PackedQ8_1* x, int64_t nb, int rows, float* y,
                  int64_t s) {
    Q4_1Group<kP>(w, x, nb, rows, y, s);
  }
};
template <int kP>
struct Q8_0G {
  static void Run(const BlockQ8_0* w, const PackedQ8_0* x, int64_t nb, int rows, float* y,
                  int64_t s) {
    Q8_0Group<kP>(w, x, nb, rows, y, s);
  }
};

const PackedRowsKernel kQ4_1{GroupBytes<PackedQ8_1>, PackQ8_1,
                             Dot<BlockQ4_1, PackedQ8_1, Q4_1G>};
const PackedRowsKernel kQ8_0{GroupBytes<PackedQ8_0>, PackQ8_0,
                             Dot<BlockQ8_0, PackedQ8_0, Q8_0G>};

}  // namespace

const PackedRowsKernel* GetPackedRowsKernelAvx512(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_1: return &kQ4_1;
    case GgmlType::kQ8_0: return &kQ8_0;
    default: return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
