// AVX-512 (F, BW, VL, DQ, VNNI) packed multi-row kernels for Q4_1 and Q5_1
// (x Q8_1), Q8_0, Q4_0 and Q5_0 (x Q8_0), Q4_K and Q6_K (x Q8_K) (see
// vec_dot_packed.h). Each activation row takes exactly the steps of its
// single-row AVX2 kernel (vec_dot_avx2.cc) in one 256-bit half of a
// register: vpdpbusd forms the same int32 lanes as maddubs + madd (the AVX2
// kernels' int16 pair sums never saturate for these operands: |w| <= 128
// against |x| <= 127), then convert, multiply by the same f32 scale product
// (d_w * d_x) and FMA-accumulate in block order; the m_w * s_x term of Q4_1
// and Q5_1 is the same scalar fma chain, one lane per row; the same
// horizontal sum at the end.
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

// The 32 quants of a weight block as bytes in element order: unsigned for
// the types with a min (Q4_1, Q5_1), signed for the others, as the AVX2
// kernels form them.
inline uint32_t Qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  return v;
}
struct DecodeQ4_1 {
  static __m256i Run(const BlockQ4_1& b) { return Nibbles32(b.qs); }
};
struct DecodeQ5_1 {
  // nibble | fifth bit << 4 (the nibble is < 16, so the add is an or).
  static __m256i Run(const BlockQ5_1& b) {
    const __m256i nib = Nibbles32(b.qs);
    return _mm256_mask_add_epi8(nib, Qh(b.qh), nib, _mm256_set1_epi8(0x10));
  }
};
struct DecodeQ8_0 {
  static __m256i Run(const BlockQ8_0& b) { return Load256(b.qs); }
};
struct DecodeQ4_0 {
  static __m256i Run(const BlockQ4_0& b) {
    return _mm256_sub_epi8(Nibbles32(b.qs), _mm256_set1_epi8(8));
  }
};
struct DecodeQ5_0 {
  // (nibble | fifth bit << 4) - 16: the nibble where the fifth bit is set,
  // else nibble | 0xF0.
  static __m256i Run(const BlockQ5_0& b) {
    const __m256i nib = Nibbles32(b.qs);
    return _mm256_mask_mov_epi8(_mm256_or_si256(nib, _mm256_set1_epi8(static_cast<char>(0xF0))),
                                Qh(b.qh), nib);
  }
};

// One group against one weight row of a type with a min (Q4_1, Q5_1: the
// m_w * s_x term); kP pairs hold the group's rows.
template <int kP, typename Block, typename Decode>
void MinGroup(const Block* w, const PackedQ8_1* x, int64_t nb, int n_rows, float* y,
              int64_t y_stride) {
  __m512 acc[kP];
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
  __m256 summs = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 dw = _mm512_set1_ps(F16(w[ib].d));
    summs = _mm256_fmadd_ps(_mm256_set1_ps(F16(w[ib].m)), _mm256_loadu_ps(x[ib].s), summs);
    const __m256i qw = Decode::Run(w[ib]);
    const __m512i qw2 = _mm512_inserti64x4(_mm512_castsi256_si512(qw), qw, 1);
    for (int p = 0; p < kP; ++p) {
      const __m512i qx = _mm512_loadu_si512(x[ib].qs[p]);
      const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qw2, qx));
      const __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps(x[ib].d[p]));
      acc[p] = _mm512_fmadd_ps(d, q, acc[p]);
    }
  }
  float s[8];
  _mm256_storeu_ps(s, summs);
  Store<kP>(acc, s, n_rows, y, y_stride);
}

// One group against one weight row of signed quants (Q8_0, Q4_0, Q5_0).
// |w| against x with w's sign applied (what vpsignb does in the AVX2
// kernels; where w = 0 the product is 0 either way).
template <int kP, typename Block, typename Decode>
void SignedGroup(const Block* w, const PackedQ8_0* x, int64_t nb, int n_rows, float* y,
                 int64_t y_stride) {
  __m512 acc[kP];
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 dw = _mm512_set1_ps(F16(w[ib].d));
    const __m256i qw = Decode::Run(w[ib]);
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

// ---------------------------------------------------------------------------
// K-quants (Q4_K, Q6_K) x Q8_K. Each row again takes its AVX2 kernel's steps
// in one half of a register: maddubs of the 32 quants of a sub-block, the
// scale applied by vpdpwssd (the same int32 lanes as madd + add: an exact
// integer sum), one convert and one fused multiply-add by x_d * d_w per
// super-block. Q4_K's mins term keeps its four lanes per row (rows 4h..4h+3
// in register h) and is folded as the AVX2 kernel folds it.

struct PackedQ8_K {
  int8_t qs[8][kPairs][64];  // chunk k (elements 32k..32k+31) of rows 2p, 2p + 1
  float d[kPairs][16];       // x_d of row 2p in lanes 0-7, of row 2p + 1 in 8-15
  float neg_d[2][16];        // -x_d of rows 4h..4h+3, each over 4 lanes
  int16_t sum32[2][32];      // rows 4h..4h+3: the 8 sums of 32 quants of each
};
static_assert(sizeof(PackedQ8_K) % 64 == 0);

size_t GroupBytesK(int64_t n) { return static_cast<size_t>(n / kQKK) * sizeof(PackedQ8_K); }

void PackQ8_K(const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n, uint8_t* group) {
  auto* out = reinterpret_cast<PackedQ8_K*>(group);
  auto row = [&](int r, int64_t ib) -> const BlockQ8_K& {
    return reinterpret_cast<const BlockQ8_K*>(x + (r < n_rows ? r : n_rows - 1) * x_row_bytes)[ib];
  };
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    PackedQ8_K& o = out[ib];
    for (int p = 0; p < kPairs; ++p) {
      for (int h = 0; h < 2; ++h) {
        const BlockQ8_K& b = row(2 * p + h, ib);
        for (int k = 0; k < 8; ++k) std::memcpy(o.qs[k][p] + 32 * h, b.qs + 32 * k, 32);
        for (int l = 0; l < 8; ++l) o.d[p][8 * h + l] = b.d;
      }
    }
    for (int r = 0; r < 8; ++r) {
      const BlockQ8_K& b = row(r, ib);
      for (int l = 0; l < 4; ++l) o.neg_d[r / 4][4 * (r % 4) + l] = -b.d;
      // The hadd of the bsums in the AVX2 kernel (int16, exact here).
      for (int j = 0; j < 8; ++j) {
        o.sum32[r / 4][8 * (r % 4) + j] = static_cast<int16_t>(b.bsums[2 * j] + b.bsums[2 * j + 1]);
      }
    }
  }
}

inline __m512i Dup(__m256i v) { return _mm512_inserti64x4(_mm512_castsi256_si512(v), v, 1); }

// The results of a K-quant group: HorizontalSum of each row's half, plus
// (Q4_K) its mins lanes folded as (m0 + m2) + (m1 + m3).
template <int kP>
inline void StoreK(const __m512* acc, const __m512* acc_m, int n_rows, float* y, int64_t y_stride) {
  float m[32];
  if (acc_m != nullptr) {
    _mm512_storeu_ps(m, acc_m[0]);
    _mm512_storeu_ps(m + 16, acc_m[1]);
  }
  for (int p = 0; p < kP; ++p) {
    for (int h = 0; h < 2 && 2 * p + h < n_rows; ++h) {
      const int r = 2 * p + h;
      const __m256 half = h == 0 ? _mm512_castps512_ps256(acc[p]) : _mm512_extractf32x8_ps(acc[p], 1);
      const float mins = acc_m != nullptr ? (m[4 * r] + m[4 * r + 2]) + (m[4 * r + 1] + m[4 * r + 3]) : 0.0f;
      y[r * y_stride] = HorizontalSum(half) + mins;
    }
  }
}

template <int kP>
void Q4_KGroup(const BlockQ4_K* w, const PackedQ8_K* x, int64_t nb, int n_rows, float* y,
               int64_t y_stride) {
  constexpr int kMinRegs = kP > 2 ? 2 : 1;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m512 acc[kP], acc_m[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
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
    const __m512i mins16 = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins)));
    for (int h = 0; h < kMinRegs; ++h) {
      const __m512i prod = _mm512_madd_epi16(mins16, _mm512_loadu_si512(x[i].sum32[h]));
      const __m512 dmin = _mm512_mul_ps(_mm512_loadu_ps(x[i].neg_d[h]), _mm512_set1_ps(dminw));
      acc_m[h] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(prod), acc_m[h]);
    }
    __m512i q[8], sc[8];
    for (int j = 0; j < 4; ++j) {
      const __m256i bits = Load256(w[i].qs + 32 * j);
      q[2 * j] = Dup(_mm256_and_si256(bits, m4));
      q[2 * j + 1] = Dup(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4));
    }
    for (int k = 0; k < 8; ++k) sc[k] = _mm512_set1_epi16(scales[k]);
    const __m512 vdw = _mm512_set1_ps(dw);
    for (int p = 0; p < kP; ++p) {
      __m512i sumi = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(x[i].qs[k][p])), sc[k]);
      }
      const __m512 d = _mm512_mul_ps(_mm512_loadu_ps(x[i].d[p]), vdw);
      acc[p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[p]);
    }
  }
  StoreK<kP>(acc, acc_m, n_rows, y, y_stride);
}

template <int kP>
void Q6_KGroup(const BlockQ6_K* w, const PackedQ8_K* x, int64_t nb, int n_rows, float* y,
               int64_t y_stride) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m512i m32 = _mm512_set1_epi8(32);
  __m512 acc[kP];
  for (int p = 0; p < kP; ++p) acc[p] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float dw = F16(w[i].d);
    __m512i q[8], scale[8];
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w[i].ql + 64 * half;
      const __m256i l0 = Load256(ql);
      const __m256i l1 = Load256(ql + 32);
      const __m256i h = Load256(w[i].qh + 32 * half);
      q[4 * half + 0] = Dup(_mm256_or_si256(_mm256_and_si256(l0, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)));
      q[4 * half + 1] = Dup(_mm256_or_si256(
          _mm256_and_si256(l1, m4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4)));
      q[4 * half + 2] = Dup(_mm256_or_si256(
          _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4)));
      q[4 * half + 3] = Dup(_mm256_or_si256(
          _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4)));
      for (int g = 0; g < 4; ++g) {
        // Elements 0..15 of the chunk use scale 2g (+8*half), 16..31 scale 2g+1.
        const int8_t* sc = w[i].scales + 8 * half + 2 * g;
        scale[4 * half + g] = Dup(_mm256_setr_epi16(sc[0], sc[0], sc[0], sc[0], sc[0], sc[0], sc[0],
                                                    sc[0], sc[1], sc[1], sc[1], sc[1], sc[1], sc[1],
                                                    sc[1], sc[1]));
      }
    }
    const __m512 vdw = _mm512_set1_ps(dw);
    for (int p = 0; p < kP; ++p) {
      __m512i sumi = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const __m512i yk = _mm512_loadu_si512(x[i].qs[k][p]);
        const __m512i p16 = _mm512_sub_epi16(_mm512_maddubs_epi16(q[k], yk), _mm512_maddubs_epi16(m32, yk));
        sumi = _mm512_dpwssd_epi32(sumi, p16, scale[k]);
      }
      const __m512 d = _mm512_mul_ps(_mm512_loadu_ps(x[i].d[p]), vdw);
      acc[p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[p]);
    }
  }
  StoreK<kP>(acc, nullptr, n_rows, y, y_stride);
}

template <typename Block, typename Packed, template <int> class Group, int kBlockElems = kQK>
void Dot(const void* vw, const uint8_t* packed, int n_rows, int64_t n, float* y,
         int64_t y_stride) {
  const auto* w = static_cast<const Block*>(vw);
  const int64_t nb = n / kBlockElems;
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

template <typename Block, typename Decode>
struct Min {
  template <int kP>
  struct G {
    static void Run(const Block* w, const PackedQ8_1* x, int64_t nb, int rows, float* y,
                    int64_t s) {
      MinGroup<kP, Block, Decode>(w, x, nb, rows, y, s);
    }
  };
};
template <typename Block, typename Decode>
struct Signed {
  template <int kP>
  struct G {
    static void Run(const Block* w, const PackedQ8_0* x, int64_t nb, int rows, float* y,
                    int64_t s) {
      SignedGroup<kP, Block, Decode>(w, x, nb, rows, y, s);
    }
  };
};

template <int kP>
struct Q4_KG {
  static void Run(const BlockQ4_K* w, const PackedQ8_K* x, int64_t nb, int rows, float* y,
                  int64_t s) {
    Q4_KGroup<kP>(w, x, nb, rows, y, s);
  }
};
template <int kP>
struct Q6_KG {
  static void Run(const BlockQ6_K* w, const PackedQ8_K* x, int64_t nb, int rows, float* y,
                  int64_t s) {
    Q6_KGroup<kP>(w, x, nb, rows, y, s);
  }
};

const PackedRowsKernel kQ4_K{GroupBytesK, PackQ8_K, Dot<BlockQ4_K, PackedQ8_K, Q4_KG, kQKK>};
const PackedRowsKernel kQ6_K{GroupBytesK, PackQ8_K, Dot<BlockQ6_K, PackedQ8_K, Q6_KG, kQKK>};
const PackedRowsKernel kQ4_1{GroupBytes<PackedQ8_1>, PackQ8_1,
                             Dot<BlockQ4_1, PackedQ8_1, Min<BlockQ4_1, DecodeQ4_1>::G>};
const PackedRowsKernel kQ5_1{GroupBytes<PackedQ8_1>, PackQ8_1,
                             Dot<BlockQ5_1, PackedQ8_1, Min<BlockQ5_1, DecodeQ5_1>::G>};
const PackedRowsKernel kQ8_0{GroupBytes<PackedQ8_0>, PackQ8_0,
                             Dot<BlockQ8_0, PackedQ8_0, Signed<BlockQ8_0, DecodeQ8_0>::G>};
const PackedRowsKernel kQ4_0{GroupBytes<PackedQ8_0>, PackQ8_0,
                             Dot<BlockQ4_0, PackedQ8_0, Signed<BlockQ4_0, DecodeQ4_0>::G>};
const PackedRowsKernel kQ5_0{GroupBytes<PackedQ8_0>, PackQ8_0,
                             Dot<BlockQ5_0, PackedQ8_0, Signed<BlockQ5_0, DecodeQ5_0>::G>};

}  // namespace

const PackedRowsKernel* GetPackedRowsKernelAvx512(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_0: return &kQ4_0;
    case GgmlType::kQ4_1: return &kQ4_1;
    case GgmlType::kQ5_0: return &kQ5_0;
    case GgmlType::kQ5_1: return &kQ5_1;
    case GgmlType::kQ8_0: return &kQ8_0;
    case GgmlType::kQ4_K: return &kQ4_K;
    case GgmlType::kQ6_K: return &kQ6_K;
    default: return nullptr;
  }
}

}  // namespace conclave::kernels::cpu
