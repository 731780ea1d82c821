#include "kernels/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention_bf16.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace {

inline const Half* SlotOf(const Half* pool, const KvLayerView& kv,
                          absl::Span<const int32_t> block_table, int64_t j,
                          int kv_head) {
  const int64_t block = block_table[j / kv.block_size];
  const int64_t slot = j % kv.block_size;
  return pool + ((block * kv.block_size + slot) * kv.n_kv_heads + kv_head) *
                    static_cast<int64_t>(kv.head_dim);
}

// Query heads per KV head that AttendOneToken handles (checked by the backend).
constexpr int kMaxGroup = 16;

inline int64_t FirstVisible(int64_t pos, int window) {
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// fp16 <-> fp32 through the compiler's _Float16: F16C instructions inside a
// function compiled for them, libgcc's IEEE conversions otherwise (same
// results, round to nearest even).
CONCLAVE_INLINE float HalfToFloat(Half h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}
CONCLAVE_INLINE float RoundToHalf(float f) { return static_cast<float>(static_cast<_Float16>(f)); }

// out[0..n) = the fp16 values of in, widened (exact). With F16C 8 at a time.
__attribute__((target("avx2,fma,f16c"))) void WidenF16c(const Half* in, float* out,
                                                                        int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}
CONCLAVE_INLINE void WidenPortable(const Half* in, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

// The body of AttendOneToken, for one SIMD level known at compile time (so
// the lane loops unroll and vectorise); instantiated inside a function
// compiled for AVX2+FMA+F16C (hardware fma and half conversions; used there
// only when head_dim is not a multiple of 64, see AttendVectorised) and in
// a portable one.
template <SimdLevel level, bool kF16c>
CONCLAVE_INLINE void AttendBody(const float* q, const KvLayerView& kv,
                                absl::Span<const int32_t> block_table, int64_t pos,
                                const AttentionParams& params, float* out, float* scratch) {
  constexpr int lanes = LanesOf(level);
  const bool tiny_blas = params.dot_order == F16DotOrder::kTinyBlas;
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  const int64_t n_pos = pos + 1;
  // Positions are processed in whole groups of `lanes` from position 0, as
  // ggml walks the (padded) KV cells; hidden positions count as zeros.
  const int64_t begin = first / lanes * lanes;
  const int64_t end = (pos / lanes + 1) * lanes;
  const int n_acc = tiny_blas || lanes == 1 ? 1 : 4;
  // The `group` query heads that share a KV head are done together, so each
  // K and V row is widened from fp16 once for all of them. Every head's sums
  // keep their own order.
  float qh[kMaxGroup][512];
  float kf[512];
  // Per head: [accumulator, lane, dim]. The inner loop over dims is
  // contiguous, so it vectorises; each (accumulator, lane, dim) still sums
  // its own terms in ggml's order.
  static thread_local std::vector<float> acc_storage;
  const size_t per_head = static_cast<size_t>(n_acc) * lanes * d;
  if (acc_storage.size() < per_head * group) acc_storage.resize(per_head * group);
  for (int kv_head = 0; kv_head < kv.n_kv_heads; ++kv_head) {
    const int h0 = kv_head * group;
    for (int g = 0; g < group; ++g) {
      for (int i = 0; i < d; ++i) qh[g][i] = RoundToHalf(q[(h0 + g) * d + i]);
    }
    // Scores, scaled (ggml_soft_max_ext multiplies kq by the scale).
    // scratch: [group, n_pos]
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      if constexpr (kF16c) {
        WidenF16c(k, kf, d);
      } else {
        WidenPortable(k, kf, d);
      }
      for (int g = 0; g < group; ++g) {
        const float dot = tiny_blas ? TinyBlasDot(level, kf, qh[g], d)
                                    : VecDotF16(level, kf, qh[g], d);
        scratch[g * n_pos + j] = dot * params.score_scale;
      }
    }
    float inv_sum[kMaxGroup];
    for (int g = 0; g < group; ++g) {
      float* sc = scratch + g * n_pos;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = first; j <= pos; ++j) max_score = std::max(max_score, sc[j]);
      // exp(s - max), summed per group of lanes into a double
      // (ggml_vec_soft_max_f32).
      double sum = 0.0;
      for (int64_t c = begin; c < end; c += lanes) {
        float chunk[16];
        for (int l = 0; l < lanes; ++l) {
          const int64_t j = c + l;
          const bool visible = j >= first && j <= pos;
          chunk[l] = visible ? GgmlExpf(level, sc[j] - max_score) : 0.0f;
          if (visible) sc[j] = chunk[l];
        }
        sum += lanes == 1 ? chunk[0] : HalvingSum(chunk, lanes);
      }
      inv_sum[g] = static_cast<float>(1.0 / sum);
    }
    // Probabilities rounded to fp16, then dotted with V over positions: lane
    // j % lanes accumulates p_j * v_j (in vec_dot order, into one of 4
    // accumulators by (j / lanes) % 4). Positions run from 0 over the padded
    // cells ggml uses (a multiple of 256), so there is no leftover tail.
    std::fill(acc_storage.begin(), acc_storage.begin() + per_head * group, 0.0f);
    for (int64_t j = first; j <= pos; ++j) {
      const Half* v = SlotOf(kv.v, kv, block_table, j, kv_head);
      if constexpr (kF16c) {
        WidenF16c(v, kf, d);
      } else {
        WidenPortable(v, kf, d);
      }
      const int l = static_cast<int>(j % lanes);
      const int a = n_acc == 1 ? 0 : static_cast<int>((j / lanes) % 4);
      for (int g = 0; g < group; ++g) {
        const float p = RoundToHalf(scratch[g * n_pos + j] * inv_sum[g]);
        float* row = acc_storage.data() + g * per_head + (static_cast<size_t>(a) * lanes + l) * d;
        for (int i = 0; i < d; ++i) row[i] = __builtin_fmaf(kf[i], p, row[i]);
      }
    }
    for (int g = 0; g < group; ++g) {
      const float* acc = acc_storage.data() + g * per_head;
      auto at = [&](int a, int l, int i) { return acc[(static_cast<size_t>(a) * lanes + l) * d + i]; };
      for (int i = 0; i < d; ++i) {
        float lane_sum[16];
        for (int l = 0; l < lanes; ++l) {
          lane_sum[l] = n_acc == 1 ? at(0, l, i) : (at(0, l, i) + at(2, l, i)) + (at(1, l, i) + at(3, l, i));
        }
        out[(h0 + g) * d + i] = lanes == 1 ? lane_sum[0] : HalvingSum(lane_sum, lanes);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The AVX2 path: the same per-lane operations as AttendBody, laid out for
// 8-float registers (a 16-lane group is two of them, lanes 0-7 and 8-15).
// GCC builds this file with -ffp-contract=off (ISO C++), so no mul/add below
// is fused behind our back; every fma is an explicit one.

#define CONCLAVE_AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define CONCLAVE_AVX2_INLINE inline __attribute__((always_inline, target("avx2,fma,f16c")))

// Working memory of the AVX2 path, per thread (AttendOneToken is called
// from the backend's pool threads).
struct FastScratch {
  std::vector<float> q;       // [group, d] Q rounded to fp16
  std::vector<float> k;       // [8, d] K rows widened
  std::vector<float> scores;  // [group, stride] from position `begin`
  std::vector<float> acc;     // [heads of a block, streams, d]
  std::vector<int64_t> rows;  // [pos - first + 1] element offset of slot j
};

// 8 fp16 values widened (exact), and 8 floats rounded to fp16 and back.
CONCLAVE_AVX2_INLINE __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
CONCLAVE_AVX2_INLINE __m256 RoundToHalf8(__m256 x) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

// The 8 sums of the 8 lanes of v[0..8), each in HalvingSum order
// (t[i] = t[i + w] + t[i] for w = 4, 2, 1), returned in order.
// (Lambdas would not inherit the target attribute.)
CONCLAVE_AVX2_INLINE __m256 HalvingStep4(__m256 a, __m256 b) {
  // Lanes i + 4 and i of a (low half) and of b (high half).
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x31), _mm256_permute2f128_ps(a, b, 0x20));
}
CONCLAVE_AVX2_INLINE __m256 HalvingStep2(__m256 x, __m256 y) {
  // Per 128-bit half: [x2 + x0, x3 + x1, y2 + y0, y3 + y1].
  return _mm256_add_ps(_mm256_shuffle_ps(x, y, _MM_SHUFFLE(3, 2, 3, 2)),
                       _mm256_shuffle_ps(x, y, _MM_SHUFFLE(1, 0, 1, 0)));
}
CONCLAVE_AVX2_INLINE __m256 HalvingSum8x8(const __m256* v) {
  // w = 4: v0 and v4 share a register (v0 in the low half), v1 and v5, ...
  const __m256 s04 = HalvingStep4(v[0], v[4]), s15 = HalvingStep4(v[1], v[5]);
  const __m256 s26 = HalvingStep4(v[2], v[6]), s37 = HalvingStep4(v[3], v[7]);
  // w = 2, then w = 1: low half [v0 v1 v2 v3], high half [v4 v5 v6 v7].
  const __m256 a = HalvingStep2(s04, s15), b = HalvingStep2(s26, s37);
  return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)),
                       _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
}

// HalvingSum of the 8 lanes of x.
CONCLAVE_AVX2_INLINE float HalvingSum8(__m256 x) {
  __m128 t = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
  t = _mm_add_ps(_mm_movehl_ps(t, t), t);
  t = _mm_add_ss(_mm_movehdup_ps(t), t);
  return _mm_cvtss_f32(t);
}

// The per-lane sums of one q.k product before the final HalvingSum, folded
// to 8 lanes: TinyBlasDot (one accumulator of L lanes) or VecDotF16 (four),
// with the ymm chunk c of 8 elements going to accumulator register c % kRegs.
// d % 64 == 0, so VecDotF16 has no leftover elements.
template <int L, bool kVecDot>
CONCLAVE_AVX2_INLINE __m256 DotLanes(const float* k, const float* q, int d) {
  constexpr int kHalves = L / 8;
  constexpr int kRegs = (kVecDot ? 4 : 1) * kHalves;
  __m256 acc[kRegs];
  for (int r = 0; r < kRegs; ++r) acc[r] = _mm256_setzero_ps();
  for (int c = 0; c < d / 8; c += kRegs) {
    for (int r = 0; r < kRegs; ++r) {
      acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(k + 8 * (c + r)), _mm256_loadu_ps(q + 8 * (c + r)), acc[r]);
    }
  }
  __m256 half[kHalves];
  for (int h = 0; h < kHalves; ++h) {
    if constexpr (kVecDot) {
      half[h] = _mm256_add_ps(_mm256_add_ps(acc[h], acc[2 * kHalves + h]),
                              _mm256_add_ps(acc[kHalves + h], acc[3 * kHalves + h]));
    } else {
      half[h] = acc[h];
    }
  }
  if constexpr (kHalves == 2) {
    return _mm256_add_ps(half[1], half[0]);  // HalvingSum's first step, w = 8
  } else {
    return half[0];
  }
}

// scores[g * stride + j - begin] = score_scale * q[g] . K[j] for the
// visible positions j = first + r, r < n_vis (and garbage up to the next
// multiple of 8 past them). k_base: K pool offset to the KV head.
// The cache of a long context does not fit in the caches: the K rows of
// the next 8 positions are prefetched, and the V rows of these, for p.v.
template <int L, bool kVecDot>
CONCLAVE_AVX2_FN void ScoresOfKvHead(const Half* k_base, const Half* v_base, const int64_t* rows,
                                     int64_t n_vis, const float* qh, int group, int d,
                                     float scale, float* scores, int64_t stride, int64_t offset,
                                     float* kbuf) {
  const __m256 vscale = _mm256_set1_ps(scale);
  for (int64_t r0 = 0; r0 < n_vis; r0 += 8) {
    for (int64_t r = r0 + 8; r < std::min(r0 + 16, n_vis); ++r) {
      const char* k = reinterpret_cast<const char*>(k_base + rows[r]);
      for (int b = 0; b < d * 2; b += 64) _mm_prefetch(k + b, _MM_HINT_T0);
    }
    for (int r = 0; r < 8; ++r) {
      const int64_t row = rows[std::min(r0 + r, n_vis - 1)];
      const Half* k = k_base + row;
      for (int i = 0; i < d; i += 8) _mm256_storeu_ps(kbuf + r * d + i, Load8(k + i));
      const char* v = reinterpret_cast<const char*>(v_base + row);
      for (int b = 0; b < d * 2; b += 64) _mm_prefetch(v + b, _MM_HINT_T1);
    }
    for (int g = 0; g < group; ++g) {
      __m256 v[8];
      for (int r = 0; r < 8; ++r) v[r] = DotLanes<L, kVecDot>(kbuf + r * d, qh + g * d, d);
      _mm256_storeu_ps(scores + g * stride + offset + r0, _mm256_mul_ps(HalvingSum8x8(v), vscale));
    }
  }
}

// ExpfAvx512 / ExpfAvx2 on 8 lanes, each lane the scalar function's
// operations; `special` gets a bit per lane that took neither function's
// common branch (those lanes must be redone with the scalar function).
template <SimdLevel level>
CONCLAVE_AVX2_INLINE __m256 ExpVec(__m256 x, int* special) {
  using namespace simd_internal;
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(kInvLn2), _mm256_set1_ps(kShift));
  const __m256 n = _mm256_sub_ps(z, _mm256_set1_ps(kShift));
  // fma(-n, c, y) == -(n * c) + y exactly.
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 poly = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(kC0), b, _mm256_set1_ps(kC1)), u,
      _mm256_fmadd_ps(_mm256_set1_ps(kC2), b, _mm256_set1_ps(kC3)));
  if constexpr (level == SimdLevel::kAvx512) {
    const __m256 j = _mm256_fmadd_ps(poly, u, _mm256_fmadd_ps(_mm256_set1_ps(kC4), b, _mm256_set1_ps(1.0f)));
    // Common branch: -126 <= n <= 127 (false for NaN).
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(n, _mm256_set1_ps(-126.0f), _CMP_GE_OQ),
                                    _mm256_cmp_ps(n, _mm256_set1_ps(127.0f), _CMP_LE_OQ));
    *special = ~_mm256_movemask_ps(ok) & 0xff;
    const __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_mul_ps(j, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
  } else {
    const __m256 j = _mm256_fmadd_ps(poly, u, _mm256_mul_ps(_mm256_set1_ps(kC4), b));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f800000)));
    // Common branch: !(|n| > 126) (true for NaN).
    const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    *special = _mm256_movemask_ps(_mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0f), _CMP_GT_OQ));
    return _mm256_fmadd_ps(j, k, k);
  }
}

// Softmax of one head's scores s[0..n) (index 0 = position `begin`, n a
// multiple of the lane count; visible positions are [lo, hi)), in place:
// leaves fp16-rounded probabilities at the visible positions and zeros
// elsewhere.
template <SimdLevel level>
CONCLAVE_AVX2_FN void SoftmaxOfHead(float* s, int64_t n, int64_t lo, int64_t hi) {
  constexpr int L = LanesOf(level);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < lo; ++i) s[i] = -kInf;
  for (int64_t i = hi; i < n; ++i) s[i] = -kInf;
  // std::max(m, x) keeps m when x is NaN, as _mm256_max_ps(x, m) does. Only
  // the sign of a zero maximum may differ, which changes no exp below.
  __m256 vmax = _mm256_set1_ps(-kInf);
  for (int64_t i = 0; i < n; i += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(s + i), vmax);
  float m[8];
  _mm256_storeu_ps(m, vmax);
  float max_score = -kInf;
  for (float x : m) max_score = std::max(max_score, x);
  // Hidden positions become exp(0) (no special case), then masked to zero.
  for (int64_t i = 0; i < lo; ++i) s[i] = max_score;
  for (int64_t i = hi; i < n; ++i) s[i] = max_score;
  const __m256 vm = _mm256_set1_ps(max_score);
  const __m256i lo_minus_1 = _mm256_set1_epi32(static_cast<int>(lo) - 1);
  const __m256i vhi = _mm256_set1_epi32(static_cast<int>(hi));
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // exp(s - max), summed per group of L lanes into a double
  // (ggml_vec_soft_max_f32).
  double sum = 0.0;
  for (int64_t c = 0; c < n; c += L) {
    __m256 e[L / 8];
    int special = 0;
    for (int h = 0; h < L / 8; ++h) {
      int sp;
      e[h] = ExpVec<level>(_mm256_sub_ps(_mm256_loadu_ps(s + c + 8 * h), vm), &sp);
      special |= sp << (8 * h);
      const __m256i idx = _mm256_add_epi32(iota, _mm256_set1_epi32(static_cast<int>(c) + 8 * h));
      const __m256i visible = _mm256_and_si256(_mm256_cmpgt_epi32(idx, lo_minus_1),
                                               _mm256_cmpgt_epi32(vhi, idx));
      e[h] = _mm256_and_ps(e[h], _mm256_castsi256_ps(visible));
    }
    if (special != 0) {
      float chunk[L];
      for (int l = 0; l < L; ++l) {
        const int64_t j = c + l;
        chunk[l] = j >= lo && j < hi ? GgmlExpf(level, s[j] - max_score) : 0.0f;
      }
      for (int h = 0; h < L / 8; ++h) e[h] = _mm256_loadu_ps(chunk + 8 * h);
    }
    for (int h = 0; h < L / 8; ++h) _mm256_storeu_ps(s + c + 8 * h, e[h]);
    sum += L == 16 ? HalvingSum8(_mm256_add_ps(e[1], e[0])) : HalvingSum8(e[0]);
  }
  const __m256 inv_sum = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(s + i, RoundToHalf8(_mm256_mul_ps(_mm256_loadu_ps(s + i), inv_sum)));
  }
}

// p.v accumulation for kHeads heads (probabilities p[h * stride + j - begin])
// over the visible positions: stream t (of kStreams = accumulators x lanes)
// gets the positions j = t mod kStreams in increasing order, which is
// accumulator (j / L) % 4, lane j % L of AttendBody. acc: [kHeads,
// kStreams, d], every (head, stream, dim) summing its own terms by fma.
// kDims: registers of 8 dims kept per head (d % (8 * kDims) == 0).
template <int kStreams, int kHeads, int kDims>
CONCLAVE_AVX2_FN void AccumulateStreams(const Half* v_base, const int64_t* rows, int64_t first,
                                        int64_t pos, const float* p, int64_t stride,
                                        int64_t begin, int d, float* acc) {
  for (int t = 0; t < kStreams; ++t) {
    const int64_t j0 = first + ((t - first % kStreams) + kStreams) % kStreams;
    for (int i0 = 0; i0 < d; i0 += 8 * kDims) {
      __m256 a[kHeads][kDims];
      for (int h = 0; h < kHeads; ++h) {
        for (int c = 0; c < kDims; ++c) a[h][c] = _mm256_setzero_ps();
      }
      for (int64_t j = j0; j <= pos; j += kStreams) {
        const Half* v = v_base + rows[j - first] + i0;
        __m256 pj[kHeads];
        for (int h = 0; h < kHeads; ++h) pj[h] = _mm256_broadcast_ss(p + h * stride + (j - begin));
        for (int c = 0; c < kDims; ++c) {
          const __m256 vc = Load8(v + 8 * c);
          for (int h = 0; h < kHeads; ++h) a[h][c] = _mm256_fmadd_ps(vc, pj[h], a[h][c]);
        }
      }
      for (int h = 0; h < kHeads; ++h) {
        for (int c = 0; c < kDims; ++c) {
          _mm256_storeu_ps(acc + (static_cast<size_t>(h) * kStreams + t) * d + i0 + 8 * c, a[h][c]);
        }
      }
    }
  }
}

// out[h, :] from acc [kHeads, n_acc * L, d]: per dim, the lane sums
// (acc0 + acc2) + (acc1 + acc3) (or acc0 alone), then HalvingSum.
template <int L, int kAcc>
CONCLAVE_AVX2_FN void ReduceStreams(const float* acc, int heads, int d, float* out) {
  constexpr int kStreams = kAcc * L;
  for (int h = 0; h < heads; ++h) {
    const float* a = acc + static_cast<size_t>(h) * kStreams * d;
    for (int i = 0; i < d; i += 8) {
      const float* ai = a + i;
      __m256 t[L];
      for (int l = 0; l < L; ++l) {
        if constexpr (kAcc == 1) {
          t[l] = _mm256_loadu_ps(ai + static_cast<size_t>(l) * d);
        } else {
          t[l] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(ai + static_cast<size_t>(l) * d),
                                             _mm256_loadu_ps(ai + static_cast<size_t>(2 * L + l) * d)),
                               _mm256_add_ps(_mm256_loadu_ps(ai + static_cast<size_t>(L + l) * d),
                                             _mm256_loadu_ps(ai + static_cast<size_t>(3 * L + l) * d)));
        }
      }
      for (int w = L / 2; w >= 1; w /= 2) {
        for (int l = 0; l < w; ++l) t[l] = _mm256_add_ps(t[l + w], t[l]);
      }
      _mm256_storeu_ps(out + h * d + i, t[0]);
    }
  }
}

// AccumulateStreams then ReduceStreams for heads [h_lo, h_lo + kHeads).
template <int L, int kAcc, int kHeads>
CONCLAVE_AVX2_FN void AttendValues(const Half* v_base, const int64_t* rows, int64_t first,
                                   int64_t pos, const float* p, int64_t stride, int64_t begin,
                                   int d, float* acc, float* out) {
  constexpr int kDims = kHeads == 1 ? 8 : kHeads <= 3 ? 4 : 2;
  if (d % (8 * kDims) == 0) {
    AccumulateStreams<kAcc * L, kHeads, kDims>(v_base, rows, first, pos, p, stride, begin, d, acc);
  } else {
    AccumulateStreams<kAcc * L, kHeads, 1>(v_base, rows, first, pos, p, stride, begin, d, acc);
  }
  ReduceStreams<L, kAcc>(acc, kHeads, d, out);
}

// The whole of AttendOneToken at `level` (kAvx2 or kAvx512), for head_dim a
// multiple of 64: per KV head, the scores of its query heads over all
// visible positions, each head's softmax, then p.v for blocks of up to 4
// heads.
template <SimdLevel level, bool kVecDot>
CONCLAVE_AVX2_FN void AttendVectorised(const float* q, const KvLayerView& kv,
                                       absl::Span<const int32_t> block_table, int64_t pos,
                                       const AttentionParams& params, float* out) {
  constexpr int L = LanesOf(level);
  constexpr int kAcc = kVecDot ? 4 : 1;
  static thread_local FastScratch fs;
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  const int64_t begin = first / L * L;
  const int64_t end = (pos / L + 1) * L;
  const int64_t n_vis = pos - first + 1;
  // Room for the scores of whole blocks of 8 positions from `first`.
  const int64_t stride = end - begin + 8;
  if (fs.q.size() < static_cast<size_t>(group) * d) fs.q.resize(static_cast<size_t>(group) * d);
  if (fs.k.size() < static_cast<size_t>(8) * d) fs.k.resize(static_cast<size_t>(8) * d);
  if (fs.scores.size() < static_cast<size_t>(group * stride)) fs.scores.resize(group * stride);
  const size_t acc_size = static_cast<size_t>(4) * kAcc * L * d;
  if (fs.acc.size() < acc_size) fs.acc.resize(acc_size);
  if (fs.rows.size() < static_cast<size_t>(n_vis)) fs.rows.resize(n_vis);
  int64_t* rows = fs.rows.data();
  for (int64_t j = first; j <= pos; ++j) {
    const int64_t block = block_table[j / kv.block_size];
    rows[j - first] = (block * kv.block_size + j % kv.block_size) * kv.n_kv_heads * static_cast<int64_t>(d);
  }
  float* scores = fs.scores.data();
  for (int kv_head = 0; kv_head < kv.n_kv_heads; ++kv_head) {
    const int h0 = kv_head * group;
    for (int i = 0; i < group * d; i += 8) {
      _mm256_storeu_ps(fs.q.data() + i, RoundToHalf8(_mm256_loadu_ps(q + h0 * d + i)));
    }
    const int64_t head_offset = static_cast<int64_t>(kv_head) * d;
    ScoresOfKvHead<L, kVecDot>(kv.k + head_offset, kv.v + head_offset, rows, n_vis, fs.q.data(), group, d,
                               params.score_scale, scores, stride, first - begin, fs.k.data());
    for (int g = 0; g < group; ++g) {
      SoftmaxOfHead<level>(scores + g * stride, end - begin, first - begin, pos + 1 - begin);
    }
    for (int g = 0; g < group;) {
      const int heads = std::min(group - g, group % 3 == 0 ? 3 : 4);
      const Half* v_base = kv.v + head_offset;
      const float* p = scores + g * stride;
      float* o = out + static_cast<int64_t>(h0 + g) * d;
      switch (heads) {
        case 1: AttendValues<L, kAcc, 1>(v_base, rows, first, pos, p, stride, begin, d, fs.acc.data(), o); break;
        case 2: AttendValues<L, kAcc, 2>(v_base, rows, first, pos, p, stride, begin, d, fs.acc.data(), o); break;
        case 3: AttendValues<L, kAcc, 3>(v_base, rows, first, pos, p, stride, begin, d, fs.acc.data(), o); break;
        default: AttendValues<L, kAcc, 4>(v_base, rows, first, pos, p, stride, begin, d, fs.acc.data(), o); break;
      }
      g += heads;
    }
  }
}

__attribute__((target("avx2,fma,f16c"))) void AttendFast(
    SimdLevel level, const float* q, const KvLayerView& kv, absl::Span<const int32_t> block_table,
    int64_t pos, const AttentionParams& params, float* out, float* scratch) {
  const bool vec_dot = params.dot_order == F16DotOrder::kVecDot;
  if (kv.head_dim % 64 == 0) {
    if (level == SimdLevel::kAvx512) {
      if (vec_dot) {
        AttendVectorised<SimdLevel::kAvx512, true>(q, kv, block_table, pos, params, out);
      } else {
        AttendVectorised<SimdLevel::kAvx512, false>(q, kv, block_table, pos, params, out);
      }
    } else if (vec_dot) {
      AttendVectorised<SimdLevel::kAvx2, true>(q, kv, block_table, pos, params, out);
    } else {
      AttendVectorised<SimdLevel::kAvx2, false>(q, kv, block_table, pos, params, out);
    }
  } else if (level == SimdLevel::kAvx512) {
    AttendBody<SimdLevel::kAvx512, true>(q, kv, block_table, pos, params, out, scratch);
  } else {
    AttendBody<SimdLevel::kAvx2, true>(q, kv, block_table, pos, params, out, scratch);
  }
}

void AttendPortable(SimdLevel level, const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  switch (level) {
    case SimdLevel::kAvx512:
      AttendBody<SimdLevel::kAvx512, false>(q, kv, block_table, pos, params, out, scratch);
      break;
    case SimdLevel::kAvx2:
      AttendBody<SimdLevel::kAvx2, false>(q, kv, block_table, pos, params, out, scratch);
      break;
    case SimdLevel::kScalar:
      AttendBody<SimdLevel::kScalar, false>(q, kv, block_table, pos, params, out, scratch);
      break;
  }
}

}  // namespace

namespace attention_internal {

// For tests: AttendOneToken at a given level (the process-wide one is read
// once), through the AVX2 path when `fast` (the CPU must have it), else the
// portable one.
void AttendAtLevel(SimdLevel level, bool fast, const float* q, const KvLayerView& kv,
                   absl::Span<const int32_t> block_table, int64_t pos,
                   const AttentionParams& params, float* out, float* scratch) {
  if (fast) {
    AttendFast(level, q, kv, block_table, pos, params, out, scratch);
  } else {
    AttendPortable(level, q, kv, block_table, pos, params, out, scratch);
  }
}

}  // namespace attention_internal

void AttendOneToken(const float* q, const KvLayerView& kv,
                    absl::Span<const int32_t> block_table, int64_t pos,
                    const AttentionParams& params, float* out, float* scratch) {
  if (kv.dtype == KvDtype::kBF16) {
    AttendOneTokenBf16(q, kv, block_table, pos, params, out);
    return;
  }
  static const SimdLevel level = DetectSimdLevel();
  if (level != SimdLevel::kScalar && CpuHasAvx2FmaF16c()) {
    AttendFast(level, q, kv, block_table, pos, params, out, scratch);
  } else {
    AttendPortable(level, q, kv, block_table, pos, params, out, scratch);
  }
}

void AttendOneTokenReference(const float* q, const KvLayerView& kv,
                             absl::Span<const int32_t> block_table,
                             int64_t pos, const AttentionParams& params,
                             float* out) {
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t first = FirstVisible(pos, params.sliding_window);
  const bool bf16 = kv.dtype == KvDtype::kBF16;
  auto value = [&](const Half* p, int i) -> double {
    return bf16 ? Bf16ToFp32(p[i]) : Fp16ToFp32(p[i]);
  };
  std::vector<double> scores(pos + 1);
  for (int h = 0; h < params.n_heads; ++h) {
    const int kv_head = h / group;
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = SlotOf(kv.k, kv, block_table, j, kv_head);
      double dot = 0.0;
      for (int i = 0; i < d; ++i) dot += double{q[h * d + i]} * value(k, i);
      scores[j] = dot * params.score_scale;
      max_score = std::max(max_score, scores[j]);
    }
    double sum = 0.0;
    for (int64_t j = first; j <= pos; ++j) {
      scores[j] = std::exp(scores[j] - max_score);
      sum += scores[j];
    }
    for (int i = 0; i < d; ++i) {
      double acc = 0.0;
      for (int64_t j = first; j <= pos; ++j) {
        acc += scores[j] / sum * value(SlotOf(kv.v, kv, block_table, j, kv_head), i);
      }
      out[h * d + i] = static_cast<float>(acc);
    }
  }
}

}  // namespace conclave::kernels::cpu
