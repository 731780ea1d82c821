// Attention over a bf16 KV cache, every path against a float64 softmax over
// the same (bf16) K and V, with an error bound derived from bf16's rounding.
#include "kernels/cpu/attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/fp16.h"

namespace conclave::kernels::cpu {
namespace {

struct Shape {
  int head_dim, n_kv_heads, group, block_size;
};

struct Bf16Layer {
  Shape shape;
  std::vector<BHalf> k, v;
  std::vector<int32_t> table;
  std::vector<float> q;

  Bf16Layer(Shape s, int positions, float q_scale, uint32_t seed) : shape(s) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int blocks = (positions + s.block_size - 1) / s.block_size + 3;
    const int64_t elems = int64_t{blocks} * s.block_size * s.n_kv_heads * s.head_dim;
    k.resize(elems);
    v.resize(elems);
    for (auto& h : k) h = Fp32ToBf16(nd(rng));
    for (auto& h : v) h = Fp32ToBf16(nd(rng));
    // A scrambled block table: pages need not be contiguous or ordered.
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(ids.begin(), ids.begin() + (positions + s.block_size - 1) / s.block_size);
    q.resize(s.n_kv_heads * s.group * s.head_dim);
    for (float& x : q) x = q_scale * nd(rng);
  }
  KvLayerView view() const {
    return {k.data(), v.data(), shape.block_size, shape.n_kv_heads, shape.head_dim,
            KvDtype::kBF16};
  }
  const BHalf* Row(const std::vector<BHalf>& pool, int64_t j, int kv_head) const {
    const int64_t block = table[j / shape.block_size];
    return pool.data() +
           ((block * shape.block_size + j % shape.block_size) * shape.n_kv_heads + kv_head) *
               int64_t{shape.head_dim};
  }
};

// The bound on |got - float64 reference| for output (h, i) that the
// contract of attention_bf16.h allows. With u = 2^-8 (bf16's unit
// roundoff, 8-bit significand):
//  - Q rounded to bf16 and f32 sums of d exact products move score j by at
//    most delta_j = (u + d * 2^-24) * scale * sum_i |q_i k_ji|;
//  - scores off by at most delta change each probability by a factor in
//    [e^-2delta, e^2delta], so the mix of V moves by <= (e^2delta - 1) max|v|;
//  - p rounded to bf16 adds <= u * sum_j p_j |v_j| <= u max|v|;
//  - the f32 softmax (exp polynomial within 2 ulps, normalisation) and the
//    f32 sum over n positions add <= (n + 8) * 2^-23 max|v|.
// max|v| is taken over the visible positions of that dimension.
// Bounds for every output (h, i), [n_heads, head_dim].
std::vector<double> Bounds(const Bf16Layer& l, int64_t pos, const AttentionParams& p) {
  const int d = l.shape.head_dim;
  const int64_t first = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
  const double u = std::ldexp(1.0, -8);
  const double n = static_cast<double>(pos - first + 1);
  std::vector<double> bounds(static_cast<size_t>(p.n_heads) * d);
  for (int h = 0; h < p.n_heads; ++h) {
    const int kv_head = h / l.shape.group;
    double delta = 0.0;
    std::vector<double> vmax(d, 0.0);
    for (int64_t j = first; j <= pos; ++j) {
      const BHalf* k = l.Row(l.k, j, kv_head);
      const BHalf* v = l.Row(l.v, j, kv_head);
      double s = 0.0;
      for (int e = 0; e < d; ++e) {
        s += std::abs(double{l.q[h * d + e]} * Bf16ToFp32(k[e]));
        vmax[e] = std::max(vmax[e], std::abs(double{Bf16ToFp32(v[e])}));
      }
      delta = std::max(delta, (u + d * std::ldexp(1.0, -24)) * std::abs(p.score_scale) * s);
    }
    for (int i = 0; i < d; ++i) {
      bounds[h * d + i] = vmax[i] * (std::expm1(2 * delta) + u + (n + 8) * std::ldexp(1.0, -23));
    }
  }
  return bounds;
}

using AttendFn = void (*)(const float*, const KvLayerView&, absl::Span<const int32_t>, int64_t,
                          const AttentionParams&, float*);

struct Path {
  const char* name;
  AttendFn fn;
};

std::vector<Path> Paths() {
  std::vector<Path> paths = {{"portable", attention_internal::AttendBf16Portable}};
  if (Bf16AttentionIsVectorised()) paths.push_back({"avx512bf16", attention_internal::AttendBf16Avx512});
  return paths;
}

// Returns the worst error relative to its bound (so a test can also check
// that the bound is not vacuous).
double ExpectWithinBound(const Bf16Layer& l, int64_t pos, int window, const Path& path) {
  const Shape& s = l.shape;
  const int n_heads = s.n_kv_heads * s.group;
  const AttentionParams params{n_heads, 1.0f / std::sqrt(float(s.head_dim)), window};
  std::vector<float> got(n_heads * s.head_dim, NAN), want(got.size());
  path.fn(l.q.data(), l.view(), l.table, pos, params, got.data());
  AttendOneTokenReference(l.q.data(), l.view(), l.table, pos, params, want.data());
  const std::vector<double> bounds = Bounds(l, pos, params);
  double worst = 0.0;
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < s.head_dim; ++i) {
      const double err = std::abs(double{got[h * s.head_dim + i]} - want[h * s.head_dim + i]);
      const double bound = bounds[h * s.head_dim + i];
      EXPECT_LE(err, bound) << path.name << " d=" << s.head_dim << " group=" << s.group
                            << " block=" << s.block_size << " pos=" << pos << " window=" << window
                            << " head " << h << " dim " << i << ": " << got[h * s.head_dim + i]
                            << " vs " << want[h * s.head_dim + i];
      if (bound > 0) worst = std::max(worst, err / bound);
    }
  }
  return worst;
}

TEST(AttentionBf16Test, EveryPathStaysWithinTheBf16BoundOfAFloat64Reference) {
  // Head dims with and without a tail of the 32-dim chunks, odd block sizes,
  // groups of 1 to 8 query heads; positions around multiples of 2 and 16.
  const int64_t positions[] = {0, 1, 2, 3, 14, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 399};
  for (Shape shape : {Shape{64, 3, 3, 16}, Shape{256, 1, 4, 16}, Shape{8, 2, 3, 4},
                      Shape{40, 2, 2, 5}, Shape{72, 1, 8, 7}, Shape{33, 1, 1, 3},
                      Shape{96, 2, 4, 16}}) {
    for (float q_scale : {1.0f, 0.1f}) {
      const Bf16Layer layer(shape, 400, q_scale, 7 + shape.head_dim + shape.group);
      for (const Path& path : Paths()) {
        for (int64_t pos : positions) {
          for (int window : {0, 7, 64}) ExpectWithinBound(layer, pos, window, path);
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST(AttentionBf16Test, TheBoundIsTightEnoughToMatter) {
  // With small queries the bound is dominated by the rounding of p (2^-8 of
  // max|v|); the observed error must use a fair part of it, else the test
  // above could not tell a rounding bug from bf16's own error.
  const Bf16Layer layer({64, 1, 4, 16}, 300, 0.1f, 3);
  for (const Path& path : Paths()) {
    double worst = 0.0;
    for (int64_t pos : {50, 150, 299}) worst = std::max(worst, ExpectWithinBound(layer, pos, 0, path));
    EXPECT_GT(worst, 0.02) << path.name;
    RecordProperty(std::string(path.name) + "_worst_error_over_bound", std::to_string(worst));
  }
}

TEST(AttentionBf16Test, AtPositionZeroTheOutputIsTheFirstValueExactly) {
  const Bf16Layer layer({72, 2, 3, 4}, 1, 1.0f, 4);
  const int n_heads = 6, d = 72;
  for (const Path& path : Paths()) {
    std::vector<float> out(n_heads * d);
    path.fn(layer.q.data(), layer.view(), layer.table, 0, {n_heads, 0.5f, 0}, out.data());
    for (int h = 0; h < n_heads; ++h) {
      const BHalf* v0 = layer.Row(layer.v, 0, h / 3);
      for (int i = 0; i < d; ++i) ASSERT_EQ(out[h * d + i], Bf16ToFp32(v0[i])) << path.name;
    }
  }
}

TEST(AttentionBf16Test, SlidingWindowHidesKeysOutsideTheWindow) {
  Bf16Layer layer({64, 1, 2, 4}, 30, 1.0f, 5);
  const int window = 5, pos = 29;
  const AttentionParams params{2, 0.125f, window};
  for (const Path& path : Paths()) {
    std::vector<float> got(2 * 64), again(2 * 64);
    path.fn(layer.q.data(), layer.view(), layer.table, pos, params, got.data());
    BHalf* hidden = const_cast<BHalf*>(layer.Row(layer.k, pos - window, 0));
    const BHalf saved = hidden[0];
    for (int i = 0; i < 64; ++i) hidden[i] = Fp32ToBf16(100.0f);
    path.fn(layer.q.data(), layer.view(), layer.table, pos, params, again.data());
    EXPECT_EQ(again, got) << path.name;
    hidden[0] = saved;
  }
}

TEST(AttentionBf16Test, AttendOneTokenTakesTheBf16PathForABf16Cache) {
  const Bf16Layer layer({64, 1, 3, 16}, 40, 1.0f, 6);
  const AttentionParams params{3, 0.125f, 0};
  std::vector<float> got(3 * 64), want(3 * 64), scratch(40 * 3);
  AttendOneToken(layer.q.data(), layer.view(), layer.table, 39, params, got.data(), scratch.data());
  (Bf16AttentionIsVectorised() ? attention_internal::AttendBf16Avx512
                               : attention_internal::AttendBf16Portable)(
      layer.q.data(), layer.view(), layer.table, 39, params, want.data());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace conclave::kernels::cpu
