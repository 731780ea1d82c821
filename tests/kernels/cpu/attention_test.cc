// Paged attention against a float64 softmax over the same fp16 cache.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"

namespace conclave::kernels::cpu {
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
