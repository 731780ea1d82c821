// AVX-512 BF16 attention over a bf16 KV cache (see attention_bf16.h).
// Per KV head: Q of its query heads rounded to bf16 once; scores of 16
// positions at a time, each an accumulator of vdpbf16ps over 32-dim chunks
// of K, the 16 accumulators reduced together by a transpose; softmax in f32
// with ggml's AVX-512 exp polynomial; then p.v with vdpbf16ps over pairs of
// positions (V rows of positions r and r + 1 interleaved by vpunpck*wd, the
// two probabilities broadcast as one bf16 pair). Head dims that are not a
// multiple of 32 are read and written with masks.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention_bf16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace attention_internal {
namespace {

constexpr int kMaxGroup = 16;

struct Scratch {
  std::vector<uint16_t> q;    // [group, chunks * 32] Q in bf16, zero-padded
  std::vector<float> scores;  // [group, n_vis rounded up to 16]
  std::vector<uint16_t> p;    // [group, n_vis rounded up to 2] bf16 probabilities
  std::vector<int64_t> rows;  // [n_vis rounded up to 16] element offset of each position
};

// Mask of the dims of chunk c (32 dims) that are < d.
inline __mmask32 ChunkMask(int c, int d) {
  const int left = d - 32 * c;
  return left >= 32 ? ~__mmask32{0} : (__mmask32{1} << left) - 1;
}

inline __m512i LoadChunk(const uint16_t* p, __mmask32 m) { return _mm512_maskz_loadu_epi16(m, p); }

inline __m512 Dp(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

// Lane k = the sum of the 16 lanes of v[k].
inline __m512 Reduce16(const __m512* v) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  // Per 128-bit lane: a[i] = [v2i: 0+2, v2i+1: 0+2, v2i: 1+3, v2i+1: 1+3].
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // Each 128-bit lane of b[i] now holds a partial sum of v[4i..4i+3], in order.
  for (int i = 0; i < 2; ++i) {
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

// exp(x) for x <= 0 with ggml_v_expf's AVX-512 polynomial (j * 2^n by
// vscalefps; far below the range it underflows to 0).
inline __m512 Exp(__m512 x) {
  using namespace simd_internal;
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(kInvLn2), _mm512_set1_ps(kShift));
  const __m512 n = _mm512_sub_ps(z, _mm512_set1_ps(kShift));
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x));
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(kC0), b, _mm512_set1_ps(kC1)), u,
                      _mm512_fmadd_ps(_mm512_set1_ps(kC2), b, _mm512_set1_ps(kC3))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(kC4), b, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(j, n);
}

// scores[r] = scale * q . K[first + r] for r < n_vis (and garbage up to the
// next multiple of 16). k_base: K pool offset to the KV head.
void Scores(const uint16_t* k_base, const int64_t* rows, int64_t n_vis, const uint16_t* qb,
            int d, float scale, float* scores) {
  const int chunks = (d + 31) / 32;
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t r0 = 0; r0 < n_vis; r0 += 16) {
    __m512 acc[16];
    for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
    for (int c = 0; c < chunks; ++c) {
      const __mmask32 m = ChunkMask(c, d);
      const __m512i qc = _mm512_loadu_si512(qb + 32 * c);
      for (int r = 0; r < 16; ++r) {
        acc[r] = Dp(acc[r], LoadChunk(k_base + rows[r0 + r] + 32 * c, m), qc);
      }
    }
    _mm512_storeu_ps(scores + r0, _mm512_mul_ps(Reduce16(acc), vscale));
  }
}

// p[r] = bf16(exp(s[r] - max) / sum) for r < n_vis; p[n_vis] = 0 when n_vis
// is odd (the pair loop reads it).
void Softmax(const float* s, int64_t n_vis, uint16_t* p) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t r = 0; r < n_vis; r += 16) {
    const __mmask16 m = n_vis - r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n_vis - r)) - 1);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, s + r));
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  static thread_local std::vector<float> e;
  e.resize((n_vis + 15) / 16 * 16);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t r = 0; r < n_vis; r += 16) {
    const __mmask16 m = n_vis - r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n_vis - r)) - 1);
    const __m512 x = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + r), max));
    const __m512 ex = _mm512_maskz_mov_ps(m, x);
    _mm512_storeu_ps(e.data() + r, ex);
    sum = _mm512_add_ps(sum, ex);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (int64_t r = 0; r < n_vis; r += 16) {
    const __mmask16 m = n_vis - r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n_vis - r)) - 1);
    const __m256bh pb = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(e.data() + r), inv));
    _mm256_mask_storeu_epi16(p + r, m, reinterpret_cast<__m256i>(pb));
  }
  if (n_vis % 2 != 0) p[n_vis] = 0;
}

// out[h] for kH heads (probabilities p + h * p_stride) over dim chunks
// [c0, c0 + kC): acc_lo gets dims 0-3 of each 8 (positions r and r + 1
// interleaved), acc_hi dims 4-7.
template <int kH, int kC>
void Values(const uint16_t* v_base, const int64_t* rows, int64_t n_vis, const uint16_t* p,
            int64_t p_stride, int d, int c0, float* out, int64_t out_stride) {
  __m512 lo[kH][kC], hi[kH][kC];
  for (int h = 0; h < kH; ++h) {
    for (int c = 0; c < kC; ++c) lo[h][c] = hi[h][c] = _mm512_setzero_ps();
  }
  __mmask32 mask[kC];
  for (int c = 0; c < kC; ++c) mask[c] = ChunkMask(c0 + c, d);
  for (int64_t r = 0; r < n_vis; r += 2) {
    const uint16_t* v0 = v_base + rows[r] + 32 * c0;
    const uint16_t* v1 = v_base + rows[r + 1 < n_vis ? r + 1 : r] + 32 * c0;
    __m512i pp[kH];
    for (int h = 0; h < kH; ++h) {
      uint32_t pair;
      std::memcpy(&pair, p + h * p_stride + r, 4);
      pp[h] = _mm512_set1_epi32(static_cast<int>(pair));
    }
    for (int c = 0; c < kC; ++c) {
      const __m512i a = LoadChunk(v0 + 32 * c, mask[c]);
      const __m512i b = LoadChunk(v1 + 32 * c, mask[c]);
      const __m512i il = _mm512_unpacklo_epi16(a, b), ih = _mm512_unpackhi_epi16(a, b);
      for (int h = 0; h < kH; ++h) {
        lo[h][c] = Dp(lo[h][c], il, pp[h]);
        hi[h][c] = Dp(hi[h][c], ih, pp[h]);
      }
    }
  }
  // Back to dim order: 128-bit lane L of lo has dims 8L..8L+3, of hi 8L+4..8L+7.
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int h = 0; h < kH; ++h) {
    for (int c = 0; c < kC; ++c) {
      const uint32_t m = mask[c];
      float* o = out + h * out_stride + 32 * (c0 + c);
      _mm512_mask_storeu_ps(o, static_cast<__mmask16>(m & 0xFFFF),
                            _mm512_permutex2var_ps(lo[h][c], first, hi[h][c]));
      _mm512_mask_storeu_ps(o + 16, static_cast<__mmask16>(m >> 16),
                            _mm512_permutex2var_ps(lo[h][c], second, hi[h][c]));
    }
  }
}

template <int kH>
void ValuesOfHeads(const uint16_t* v_base, const int64_t* rows, int64_t n_vis, const uint16_t* p,
                   int64_t p_stride, int d, float* out, int64_t out_stride) {
  // Accumulators: 2 * kH * kC registers, at most 16.
  constexpr int kC = kH <= 2 ? 4 : 2;
  const int chunks = (d + 31) / 32;
  int c = 0;
  for (; c + kC <= chunks; c += kC) {
    Values<kH, kC>(v_base, rows, n_vis, p, p_stride, d, c, out, out_stride);
  }
  for (; c < chunks; ++c) Values<kH, 1>(v_base, rows, n_vis, p, p_stride, d, c, out, out_stride);
}

}  // namespace

void AttendBf16Avx512(const float* q, const KvLayerView& kv,
                      absl::Span<const int32_t> block_table, int64_t pos,
                      const AttentionParams& params, float* out) {
  static thread_local Scratch fs;
  const int d = kv.head_dim;
  const int chunks = (d + 31) / 32;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t w = params.sliding_window;
  const int64_t first = w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
  const int64_t n_vis = pos - first + 1;
  const int64_t n16 = (n_vis + 15) / 16 * 16;
  const int64_t p_stride = (n_vis + 1) / 2 * 2;
  fs.q.assign(static_cast<size_t>(group) * chunks * 32, 0);
  if (fs.scores.size() < static_cast<size_t>(group * n16)) fs.scores.resize(group * n16);
  if (fs.p.size() < static_cast<size_t>(group * p_stride)) fs.p.resize(group * p_stride);
  if (fs.rows.size() < static_cast<size_t>(n16)) fs.rows.resize(n16);
  int64_t* rows = fs.rows.data();
  for (int64_t r = 0; r < n_vis; ++r) {
    const int64_t j = first + r;
    rows[r] = (int64_t{block_table[j / kv.block_size]} * kv.block_size + j % kv.block_size) *
              kv.n_kv_heads * int64_t{d};
  }
  // Padding positions read the last row again (their scores are never used).
  for (int64_t r = n_vis; r < n16; ++r) rows[r] = rows[n_vis - 1];
  for (int kv_head = 0; kv_head < kv.n_kv_heads; ++kv_head) {
    const int h0 = kv_head * group;
    const int64_t head_offset = int64_t{kv_head} * d;
    for (int g = 0; g < group; ++g) {
      const float* qh = q + int64_t{h0 + g} * d;
      uint16_t* qb = fs.q.data() + static_cast<size_t>(g) * chunks * 32;
      for (int i = 0; i < d; i += 16) {
        const __mmask16 m = d - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (d - i)) - 1);
        const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, qh + i));
        _mm256_mask_storeu_epi16(qb + i, m, reinterpret_cast<__m256i>(b));
      }
      float* sc = fs.scores.data() + g * n16;
      Scores(kv.k + head_offset, rows, n_vis, qb, d, params.score_scale, sc);
      Softmax(sc, n_vis, fs.p.data() + g * p_stride);
    }
    for (int g = 0; g < group;) {
      const int heads = std::min(group - g, group % 3 == 0 ? 3 : 4);
      const uint16_t* p = fs.p.data() + g * p_stride;
      float* o = out + int64_t{h0 + g} * d;
      const uint16_t* v_base = kv.v + head_offset;
      switch (heads) {
        case 1: ValuesOfHeads<1>(v_base, rows, n_vis, p, p_stride, d, o, d); break;
        case 2: ValuesOfHeads<2>(v_base, rows, n_vis, p, p_stride, d, o, d); break;
        case 3: ValuesOfHeads<3>(v_base, rows, n_vis, p, p_stride, d, o, d); break;
        default: ValuesOfHeads<4>(v_base, rows, n_vis, p, p_stride, d, o, d); break;
      }
      g += heads;
    }
  }
}

}  // namespace attention_internal
}  // namespace conclave::kernels::cpu
