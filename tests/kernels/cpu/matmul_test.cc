// MatMul (activations quantized to the weight type's dot type, fast vec_dot,
// rows split over threads) against MatMulReference (dequantized weights,
// float activations, double sums).
#include "kernels/cpu/matmul.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"

namespace conclave::kernels::cpu {
namespace {

// Random weights of `type`: quantize random floats through the activation
// quantizers where they are the same format, else fill raw blocks.
std::vector<uint8_t> RandomWeights(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> bytes(RowBytes(type, cols) * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  // Make every fp16 scale finite and modest: rewrite scales per block type.
  const TypeTraits& t = TraitsOf(type);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const int64_t blocks = rows * cols / t.block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* blk = bytes.data() + b * t.block_bytes;
    auto put = [&](int offset, float v) {
      const Half h = Fp32ToFp16(v);
      std::memcpy(blk + offset, &h, 2);
    };
    switch (type) {
      case GgmlType::kQ4_0: case GgmlType::kQ5_0: case GgmlType::kQ8_0: put(0, scale(rng)); break;
      case GgmlType::kQ4_1: put(0, scale(rng)); put(2, -scale(rng) * 8); break;
      case GgmlType::kQ5_1: put(0, scale(rng)); put(2, -scale(rng) * 16); break;
      case GgmlType::kQ4_K: put(0, scale(rng)); put(2, scale(rng)); break;
      case GgmlType::kQ6_K: put(208, scale(rng)); break;
      case GgmlType::kF16:
        for (int i = 0; i < t.block_bytes; i += 2) put(i, scale(rng) * 20 - 0.5f);
        break;
      case GgmlType::kBF16:
        for (int i = 0; i < t.block_bytes; i += 2) {
          const BHalf h = Fp32ToBf16(scale(rng) * 20 - 0.5f);
          std::memcpy(blk + i, &h, 2);
        }
        break;
      case GgmlType::kF32: {
        const float v = scale(rng) * 20 - 0.5f;
        std::memcpy(blk, &v, 4);
        break;
      }
      default: ADD_FAILURE() << "no generator for " << TypeName(type);
    }
  }
  return bytes;
}

TEST(MatMulTest, MatchesTheReferenceForEveryWeightTypeAndBatchSize) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  MatMulScratch scratch;
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_0,
                        GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                        GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    // Odd block counts (17 blocks of 32, 3 super-blocks of 256); token
    // counts that take the single-row kernel (1), a partial packed group
    // (3), a whole one (8) and a whole one plus a tail (13).
    const int64_t cols = TraitsOf(type).block_elems == 256 ? 768 : 544;
    const int64_t rows = 37;
    std::vector<uint8_t> wbytes = RandomWeights(type, rows, cols, rng);
    WeightTensor w{"w", type, {cols, rows}, wbytes.data()};
    for (int n_tokens : {1, 3, 8, 13}) {
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<float> x(n_tokens * cols), got(n_tokens * rows), want(n_tokens * rows);
      for (float& v : x) v = d(rng);
      MatMul(w, x.data(), got.data(), n_tokens, scratch, pool);
      MatMulReference(w, x.data(), want.data(), n_tokens);
      // Bound: the activation quantization error (half a step of the
      // block's scale, amax/127 for Q8, 2^-9 relative for fp16/bf16
      // activations) times the |w| it multiplies, plus float summation.
      std::vector<float> wrow(cols);
      const int act_block = TraitsOf(ActivationTypeFor(type)).block_elems;
      for (int64_t r = 0; r < rows; ++r) {
        GetRow(w, r, wrow.data());
        for (int t = 0; t < n_tokens; ++t) {
          double bound = 0.0, abs_sum = 0.0;
          for (int64_t b = 0; b < cols; b += std::max(act_block, 32)) {
            float amax = 0.0f;
            const int64_t end = std::min<int64_t>(cols, b + std::max(act_block, 32));
            for (int64_t c = b; c < end; ++c) amax = std::max(amax, std::abs(x[t * cols + c]));
            for (int64_t c = b; c < end; ++c) {
              const double wx = std::abs(double{wrow[c]});
              abs_sum += wx * std::abs(x[t * cols + c]);
              if (type == GgmlType::kF32) continue;
              if (type == GgmlType::kF16) bound += wx * std::abs(x[t * cols + c]) * std::ldexp(1.0, -11);
              else if (type == GgmlType::kBF16) bound += wx * std::abs(x[t * cols + c]) * std::ldexp(1.0, -8);
              else bound += wx * amax / 127.0 * 0.5;
            }
          }
          const double tol = 1.01 * bound + 1e-5 * abs_sum + 1e-6;
          ASSERT_NEAR(got[t * rows + r], want[t * rows + r], tol)
              << TypeName(type) << " row " << r << " token " << t;
        }
      }
    }
  }
}

TEST(MatMulTest, GetRowReturnsTheDequantizedRow) {
  std::mt19937 rng(12);
  std::vector<uint8_t> wbytes = RandomWeights(GgmlType::kQ8_0, 5, 64, rng);
  WeightTensor w{"w", GgmlType::kQ8_0, {64, 5}, wbytes.data()};
  std::vector<float> row(64), direct(64);
  GetRow(w, 3, row.data());
  DequantizeRow(GgmlType::kQ8_0, wbytes.data() + 3 * RowBytes(GgmlType::kQ8_0, 64), direct.data(), 64);
  EXPECT_EQ(row, direct);
}

}  // namespace
}  // namespace conclave::kernels::cpu
