// Paged attention against a float64 softmax over the same fp16 cache.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"

namespace conclave::kernels::cpu {
namespace attention_internal {
// Defined in attention.cc: AttendOneToken at `level`, through the AVX2 path
// when `fast`, else the portable one.
void AttendAtLevel(SimdLevel level, bool fast, const float* q, const KvLayerView& kv,
                   absl::Span<const int32_t> block_table, int64_t pos,
                   const AttentionParams& params, float* out, float* scratch);
}  // namespace attention_internal

namespace {

struct Fixture {
  int block_size = 4, n_kv_heads = 2, head_dim = 8, n_heads = 6, num_blocks = 40;
  std::vector<Half> k, v;
  std::vector<int32_t> table;

  explicit Fixture(int positions, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    const int64_t elems = int64_t{num_blocks} * block_size * n_kv_heads * head_dim;
    k.resize(elems);
    v.resize(elems);
    for (auto& h : k) h = Fp32ToFp16(d(rng));
    for (auto& h : v) h = Fp32ToFp16(d(rng));
    // A scrambled block table: pages need not be contiguous or ordered.
    table.resize((positions + block_size - 1) / block_size);
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::copy_n(ids.begin(), table.size(), table.begin());
  }
  KvLayerView view() const { return {k.data(), v.data(), block_size, n_kv_heads, head_dim}; }
};

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  // Q and the probabilities are rounded to fp16 (relative 2^-11 each) and V
  // entries are O(1): the output moves by at most ~2^-10 of max |V|.
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 4e-3) << i;
}

// The order AttendOneToken must keep, written as plainly as possible (one
// position, one head, one lane at a time): the specification the fast paths
// are compared with bit for bit.
float ToHalfAndBack(float f) { return Fp16ToFp32(Fp32ToFp16(f)); }

const Half* Slot(const Half* pool, const KvLayerView& kv, absl::Span<const int32_t> table,
                 int64_t j, int kv_head) {
  const int64_t block = table[j / kv.block_size];
  return pool + ((block * kv.block_size + j % kv.block_size) * kv.n_kv_heads + kv_head) *
                    int64_t{kv.head_dim};
}

void AttendInLaneOrder(SimdLevel level, const float* q, const KvLayerView& kv,
                       absl::Span<const int32_t> table, int64_t pos,
                       const AttentionParams& params, float* out) {
  const int lanes = LanesOf(level);
  const bool tiny_blas = params.dot_order == F16DotOrder::kTinyBlas;
  const int d = kv.head_dim;
  const int group = params.n_heads / kv.n_kv_heads;
  const int64_t w = params.sliding_window;
  const int64_t first = w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
  const int64_t begin = first / lanes * lanes;
  const int64_t end = (pos / lanes + 1) * lanes;
  const int n_acc = tiny_blas || lanes == 1 ? 1 : 4;
  std::vector<float> qh(d), kf(d), e(pos + 1);
  for (int h = 0; h < params.n_heads; ++h) {
    const int kv_head = h / group;
    for (int i = 0; i < d; ++i) qh[i] = ToHalfAndBack(q[h * d + i]);
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = Slot(kv.k, kv, table, j, kv_head);
      for (int i = 0; i < d; ++i) kf[i] = Fp16ToFp32(k[i]);
      const float dot = tiny_blas ? TinyBlasDot(level, kf.data(), qh.data(), d)
                                  : VecDotF16(level, kf.data(), qh.data(), d);
      e[j] = dot * params.score_scale;
    }
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = first; j <= pos; ++j) max_score = std::max(max_score, e[j]);
    double sum = 0.0;
    for (int64_t c = begin; c < end; c += lanes) {
      float chunk[16];
      for (int l = 0; l < lanes; ++l) {
        const int64_t j = c + l;
        chunk[l] = j >= first && j <= pos ? GgmlExpf(level, e[j] - max_score) : 0.0f;
        if (j >= first && j <= pos) e[j] = chunk[l];
      }
      sum += lanes == 1 ? chunk[0] : HalvingSum(chunk, lanes);
    }
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int i = 0; i < d; ++i) {
      float acc[4][16] = {};
      for (int64_t j = first; j <= pos; ++j) {
        const float p = ToHalfAndBack(e[j] * inv_sum);
        const float v = Fp16ToFp32(Slot(kv.v, kv, table, j, kv_head)[i]);
        float& a = acc[n_acc == 1 ? 0 : (j / lanes) % 4][j % lanes];
        a = std::fma(v, p, a);
      }
      float lane_sum[16];
      for (int l = 0; l < lanes; ++l) {
        lane_sum[l] = n_acc == 1 ? acc[0][l] : (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
      }
      out[h * d + i] = lanes == 1 ? lane_sum[0] : HalvingSum(lane_sum, lanes);
    }
  }
}

struct Shape {
  int head_dim, n_kv_heads, group, block_size;
};

// Random K, V and Q of one shape; `sharpness` scales Q so that softmax
// exponents reach ggml_v_expf's special ranges.
struct RandomLayer {
  Shape shape;
  std::vector<Half> k, v;
  std::vector<int32_t> table;
  std::vector<float> q;

  RandomLayer(Shape s, int positions, float sharpness, uint32_t seed) : shape(s) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int blocks = (positions + s.block_size - 1) / s.block_size + 3;
    const int64_t elems = int64_t{blocks} * s.block_size * s.n_kv_heads * s.head_dim;
    k.resize(elems);
    v.resize(elems);
    for (auto& h : k) h = Fp32ToFp16(nd(rng));
    for (auto& h : v) h = Fp32ToFp16(nd(rng));
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(ids.begin(), ids.begin() + (positions + s.block_size - 1) / s.block_size);
    q.resize(s.n_kv_heads * s.group * s.head_dim);
    for (float& x : q) x = sharpness * nd(rng);
  }
  KvLayerView view() const { return {k.data(), v.data(), shape.block_size, shape.n_kv_heads, shape.head_dim}; }
};

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void ExpectLaneOrderAt(const RandomLayer& layer, int64_t pos, int window) {
  const Shape& s = layer.shape;
  const int n_heads = s.n_kv_heads * s.group;
  const size_t n_out = static_cast<size_t>(n_heads) * s.head_dim;
  std::vector<float> scratch((pos + 1) * s.group);
  for (SimdLevel level : {SimdLevel::kAvx2, SimdLevel::kAvx512}) {
    for (F16DotOrder order : {F16DotOrder::kTinyBlas, F16DotOrder::kVecDot}) {
      AttentionParams params{n_heads, 1.0f / std::sqrt(float(s.head_dim)), window, order};
      std::vector<float> want(n_out), portable(n_out, -1.0f), fast(n_out, -1.0f);
      AttendInLaneOrder(level, layer.q.data(), layer.view(), layer.table, pos, params, want.data());
      attention_internal::AttendAtLevel(level, false, layer.q.data(), layer.view(), layer.table, pos,
                                        params, portable.data(), scratch.data());
      const std::string where = "d=" + std::to_string(s.head_dim) + " group=" + std::to_string(s.group) +
                                " pos=" + std::to_string(pos) + " window=" + std::to_string(window) +
                                " lanes=" + std::to_string(LanesOf(level)) +
                                (order == F16DotOrder::kVecDot ? " vec_dot" : " tinyblas");
      EXPECT_TRUE(SameBits(portable, want)) << "portable " << where;
      if (CpuHasAvx2FmaF16c()) {
        attention_internal::AttendAtLevel(level, true, layer.q.data(), layer.view(), layer.table, pos,
                                          params, fast.data(), scratch.data());
        EXPECT_TRUE(SameBits(fast, want)) << "avx2 " << where;
      }
    }
  }
}

TEST(AttentionTest, EveryPathKeepsTheLaneOrderBitForBitAtEveryPosition) {
  // SmolLM2's shape: head_dim 64, 3 query heads per KV head.
  RandomLayer layer({64, 3, 3, 16}, 700, 1.0f, 5);
  for (int64_t pos = 0; pos < 700; ++pos) {
    ExpectLaneOrderAt(layer, pos, 0);
    if (HasFailure()) return;
  }
}

TEST(AttentionTest, EveryPathKeepsTheLaneOrderBitForBitForOtherShapesAndWindows) {
  const int64_t positions[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 255,
                               256, 257, 300, 511, 512, 577, 640, 699};
  for (Shape shape : {Shape{64, 2, 1, 16}, Shape{64, 1, 4, 5}, Shape{256, 1, 4, 16},
                      Shape{256, 2, 3, 7}, Shape{256, 1, 1, 32}}) {
    for (float sharpness : {1.0f, 40.0f}) {
      RandomLayer layer(shape, 700, sharpness, 6 + shape.head_dim + shape.group);
      for (int64_t pos : positions) {
        for (int window : {0, 5, 100, 512}) ExpectLaneOrderAt(layer, pos, window);
        if (HasFailure()) return;
      }
    }
  }
}

// The bound on |got - float64 reference| for output (h, i) of a layer with
// fp16 K and V. With u = 2^-11 (fp16's unit roundoff, 11-bit significand):
//  - Q rounded to fp16 and the f32 sums of d exact products (fp16 x fp16
//    fits in f32) move score j by at most delta_j =
//    (u + d * 2^-24) * scale * sum_i |q_i k_ji|;
//  - scores off by at most delta change each probability by a factor in
//    [e^-2delta, e^2delta], so the mix of V moves by <= (e^2delta - 1) max|v|;
//  - p rounded to fp16 adds <= u * max|v|;
//  - ggml's exp (within 2 f32 ulps), the normalisation and the f32 sums over
//    n positions add <= (n + 8) * 2^-23 max|v|.
std::vector<double> Fp16Bounds(const RandomLayer& l, int64_t pos, const AttentionParams& p) {
  const Shape& s = l.shape;
  const int d = s.head_dim;
  const int64_t first = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
  const double u = std::ldexp(1.0, -11);
  const double n = static_cast<double>(pos - first + 1);
  std::vector<double> bounds(static_cast<size_t>(p.n_heads) * d);
  for (int h = 0; h < p.n_heads; ++h) {
    const int kv_head = h / s.group;
    double delta = 0.0;
    std::vector<double> vmax(d, 0.0);
    for (int64_t j = first; j <= pos; ++j) {
      const Half* k = Slot(l.k.data(), l.view(), l.table, j, kv_head);
      const Half* v = Slot(l.v.data(), l.view(), l.table, j, kv_head);
      double sum = 0.0;
      for (int e = 0; e < d; ++e) {
        sum += std::abs(double{l.q[h * d + e]} * Fp16ToFp32(k[e]));
        vmax[e] = std::max(vmax[e], std::abs(double{Fp16ToFp32(v[e])}));
      }
      delta = std::max(delta, (u + d * std::ldexp(1.0, -24)) * std::abs(p.score_scale) * sum);
    }
    for (int i = 0; i < d; ++i) {
      bounds[h * d + i] = vmax[i] * (std::expm1(2 * delta) + u + (n + 8) * std::ldexp(1.0, -23));
    }
  }
  return bounds;
}

TEST(AttentionTest, EveryPathAndLevelStaysWithinTheFp16BoundOfAFloat64Reference) {
  // Head dims of the vectorised path (multiples of 64) and of the portable
  // one (40, 72), odd block sizes, groups of 1 to 8 query heads.
  const int64_t positions[] = {0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 255, 256, 257, 399};
  for (Shape shape : {Shape{64, 3, 3, 16}, Shape{256, 1, 4, 16}, Shape{40, 2, 2, 5},
                      Shape{72, 1, 8, 7}, Shape{128, 2, 1, 3}}) {
    for (float sharpness : {1.0f, 0.1f}) {
      const RandomLayer layer(shape, 400, sharpness, 17 + shape.head_dim + shape.group);
      const int n_heads = shape.n_kv_heads * shape.group;
      std::vector<float> scratch(400 * shape.group);
      for (SimdLevel level : {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
        for (bool fast : {false, true}) {
          if (fast && (level == SimdLevel::kScalar || !CpuHasAvx2FmaF16c())) continue;
          for (F16DotOrder order : {F16DotOrder::kTinyBlas, F16DotOrder::kVecDot}) {
            for (int64_t pos : positions) {
              for (int window : {0, 9}) {
                const AttentionParams params{n_heads, 1.0f / std::sqrt(float(shape.head_dim)),
                                             window, order};
                std::vector<float> got(n_heads * shape.head_dim), want(got.size());
                attention_internal::AttendAtLevel(level, fast, layer.q.data(), layer.view(),
                                                  layer.table, pos, params, got.data(),
                                                  scratch.data());
                AttendOneTokenReference(layer.q.data(), layer.view(), layer.table, pos, params,
                                        want.data());
                const std::vector<double> bounds = Fp16Bounds(layer, pos, params);
                for (size_t e = 0; e < got.size(); ++e) {
                  ASSERT_LE(std::abs(double{got[e]} - want[e]), bounds[e])
                      << "d=" << shape.head_dim << " group=" << shape.group << " lanes="
                      << LanesOf(level) << (fast ? " fast" : " portable") << " pos=" << pos
                      << " window=" << window << " element " << e;
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(AttentionTest, MatchesTheReferenceAtEveryPositionThroughAScrambledBlockTable) {
  const int positions = 37;
  Fixture f(positions, 1);
  std::mt19937 rng(2);
  std::normal_distribution<float> d(0.0f, 1.0f);
  AttentionParams params{f.n_heads, 1.0f / std::sqrt(8.0f), 0};
  std::vector<float> scratch(positions * (f.n_heads / f.n_kv_heads));
  for (int pos = 0; pos < positions; ++pos) {
    std::vector<float> q(f.n_heads * f.head_dim), got(q.size()), want(q.size());
    for (float& x : q) x = d(rng);
    AttendOneToken(q.data(), f.view(), f.table, pos, params, got.data(), scratch.data());
    AttendOneTokenReference(q.data(), f.view(), f.table, pos, params, want.data());
    ExpectClose(got, want);
  }
}

TEST(AttentionTest, AtPositionZeroTheOutputIsTheFirstValue) {
  Fixture f(1, 3);
  std::vector<float> q(f.n_heads * f.head_dim, 0.5f), out(q.size()), scratch(f.n_heads / f.n_kv_heads);
  AttendOneToken(q.data(), f.view(), f.table, 0, {f.n_heads, 1.0f, 0}, out.data(), scratch.data());
  const int group = f.n_heads / f.n_kv_heads;
  for (int h = 0; h < f.n_heads; ++h) {
    const Half* v0 = f.v.data() + (int64_t{f.table[0]} * f.block_size * f.n_kv_heads +
                                   h / group) * f.head_dim;
    for (int i = 0; i < f.head_dim; ++i) EXPECT_EQ(out[h * f.head_dim + i], Fp16ToFp32(v0[i]));
  }
}

TEST(AttentionTest, SlidingWindowHidesKeysOutsideTheWindow) {
  const int positions = 30, window = 5;
  Fixture f(positions, 4);
  std::vector<float> q(f.n_heads * f.head_dim, 0.1f), got(q.size()), want(q.size());
  std::vector<float> scratch(positions * (f.n_heads / f.n_kv_heads));
  AttentionParams sliding{f.n_heads, 0.3f, window};
  AttendOneToken(q.data(), f.view(), f.table, positions - 1, sliding, got.data(), scratch.data());
  AttendOneTokenReference(q.data(), f.view(), f.table, positions - 1, sliding, want.data());
  ExpectClose(got, want);
  // Changing a key outside the window changes nothing.
  const int64_t hidden_pos = positions - 1 - window;
  Half* k = f.k.data() + (int64_t{f.table[hidden_pos / f.block_size]} * f.block_size +
                          hidden_pos % f.block_size) * f.n_kv_heads * f.head_dim;
  for (int i = 0; i < f.n_kv_heads * f.head_dim; ++i) k[i] = Fp32ToFp16(100.0f);
  std::vector<float> again(q.size());
  AttendOneToken(q.data(), f.view(), f.table, positions - 1, sliding, again.data(), scratch.data());
  EXPECT_EQ(again, got);
}

}  // namespace
}  // namespace conclave::kernels::cpu
