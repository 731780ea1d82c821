// MatMulQ4KRepacked (the order of llama.cpp's repacked q4_K_8x8_q8_K path)
// against MatMulReference, and the split of activation rows between its
// gemm order (groups of 4) and gemv order (the rest).
#include "kernels/cpu/matmul_q4_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace {

// Random Q4_K rows: random quants, scales and mins; d, dmin in [0.001, 0.05).
std::vector<uint8_t> RandomQ4K(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> bytes(RowBytes(GgmlType::kQ4_K, cols) * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  auto* blocks = reinterpret_cast<BlockQ4_K*>(bytes.data());
  for (int64_t b = 0; b < rows * cols / kQKK; ++b) {
    blocks[b].d = Fp32ToFp16(scale(rng));
    blocks[b].dmin = Fp32ToFp16(scale(rng));
  }
  return bytes;
}

std::vector<float> RandomActivations(int n_tokens, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n_tokens * cols);
  for (float& v : x) v = d(rng);
  return x;
}

// |got - want| <= the Q8_K quantization error (half a step, amax/127/2, of
// each 256-block times the |w| it meets) plus float summation slack.
void ExpectWithinQ8KBound(const WeightTensor& w, const std::vector<float>& x,
                          const std::vector<float>& got, const std::vector<float>& want,
                          int n_tokens) {
  const int64_t cols = w.cols(), rows = w.rows();
  std::vector<float> wrow(cols);
  for (int64_t r = 0; r < rows; ++r) {
    GetRow(w, r, wrow.data());
    for (int t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + t * cols;
      double bound = 0.0, abs_sum = 0.0;
      for (int64_t b = 0; b < cols; b += kQKK) {
        float amax = 0.0f;
        for (int64_t c = b; c < b + kQKK; ++c) amax = std::max(amax, std::abs(xt[c]));
        for (int64_t c = b; c < b + kQKK; ++c) {
          const double wx = std::abs(double{wrow[c]});
          abs_sum += wx * std::abs(xt[c]);
          bound += wx * amax / 127.0 * 0.5;
        }
      }
      ASSERT_NEAR(got[t * rows + r], want[t * rows + r], 1.01 * bound + 1e-5 * abs_sum + 1e-6)
          << "rows " << rows << " row " << r << " token " << t << " of " << n_tokens;
    }
  }
}

TEST(MatMulQ4KTest, MatchesTheReferenceForOneToNineTokens) {
  std::mt19937 rng(21);
  ThreadPool pool(2);
  MatMulScratch scratch;
  const int64_t cols = 768;
  // 40 rows: what llama.cpp repacks; 37: not a multiple of 8 (MatMul keeps
  // the vec_dot path there, the kernel itself does not care).
  for (int64_t rows : {40, 37}) {
    std::vector<uint8_t> wbytes = RandomQ4K(rows, cols, rng);
    WeightTensor w{"w", GgmlType::kQ4_K, {cols, rows}, wbytes.data()};
    for (int n_tokens = 1; n_tokens <= 9; ++n_tokens) {
      const std::vector<float> x = RandomActivations(n_tokens, cols, rng);
      std::vector<float> got(n_tokens * rows), via_matmul(n_tokens * rows),
          want(n_tokens * rows);
      MatMulQ4KRepacked(w, x.data(), got.data(), n_tokens, scratch, pool);
      MatMul(w, x.data(), via_matmul.data(), n_tokens, scratch, pool);
      MatMulReference(w, x.data(), want.data(), n_tokens);
      ExpectWithinQ8KBound(w, x, got, want, n_tokens);
      ExpectWithinQ8KBound(w, x, via_matmul, want, n_tokens);
      if (UsesRepackedQ4K(w)) EXPECT_EQ(via_matmul, got) << "rows " << rows;
    }
  }
}

TEST(MatMulQ4KTest, OnlyRepackableShapesTakeTheRepackedPath) {
  std::mt19937 rng(22);
  std::vector<uint8_t> wbytes = RandomQ4K(40, 256, rng);
  const WeightTensor w40{"w", GgmlType::kQ4_K, {256, 40}, wbytes.data()};
  const WeightTensor w36{"w", GgmlType::kQ4_K, {256, 36}, wbytes.data()};
  const WeightTensor q6{"w", GgmlType::kQ6_K, {256, 40}, wbytes.data()};
  EXPECT_FALSE(RepackableQ4K(w36));
  EXPECT_FALSE(RepackableQ4K(q6));
  EXPECT_EQ(RepackableQ4K(w40), DetectSimdLevel() != SimdLevel::kScalar && CpuHasAvx2FmaF16c());
  // Opt-in only (CONCLAVE_Q4K_ORDER=repacked), never by default.
  if (std::getenv("CONCLAVE_Q4K_ORDER") == nullptr) EXPECT_FALSE(UsesRepackedQ4K(w40));
}

// ggml multiplies rows [0, n - n % 4) in groups of 4 with its gemm (n > 3)
// and the rest one at a time with its gemv: a token's result depends only on
// which of the two it falls in, never on the other tokens' values.
TEST(MatMulQ4KTest, RowsSplitIntoGemmGroupsOfFourAndGemvLeftovers) {
  std::mt19937 rng(23);
  ThreadPool pool(2);
  MatMulScratch scratch;
  const int64_t cols = 1024, rows = 24;
  std::vector<uint8_t> wbytes = RandomQ4K(rows, cols, rng);
  WeightTensor w{"w", GgmlType::kQ4_K, {cols, rows}, wbytes.data()};
  const int n = 7;
  const std::vector<float> x = RandomActivations(n, cols, rng);
  std::vector<float> all(n * rows);
  MatMulQ4KRepacked(w, x.data(), all.data(), n, scratch, pool);

  // Tokens 0..3: the gemm, as in a call with exactly those 4 tokens.
  std::vector<float> four(4 * rows);
  MatMulQ4KRepacked(w, x.data(), four.data(), 4, scratch, pool);
  for (int64_t i = 0; i < 4 * rows; ++i) EXPECT_EQ(all[i], four[i]) << i;
  // Tokens 4..6: the gemv, as in a call with each alone (n <= 3 is all gemv).
  for (int t = 4; t < n; ++t) {
    std::vector<float> one(rows);
    MatMulQ4KRepacked(w, x.data() + t * cols, one.data(), 1, scratch, pool);
    for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(all[t * rows + r], one[r]) << t << " " << r;
  }
  std::vector<float> three(3 * rows);
  MatMulQ4KRepacked(w, x.data() + 4 * cols, three.data(), 3, scratch, pool);
  for (int64_t i = 0; i < 3 * rows; ++i) EXPECT_EQ(all[4 * rows + i], three[i]) << i;
}

}  // namespace
}  // namespace conclave::kernels::cpu
