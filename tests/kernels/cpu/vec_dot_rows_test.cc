// The multi-row kernels (plain and packed) must equal the single-row VecDot
// of every pair bit for bit (batching may never change a sequence's
// numbers).
#include "kernels/cpu/vec_dot_rows.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/vec_dot_packed.h"
#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {
namespace {

// A weight row of `type`: random quant bits, f16 scales in the ranges real
// GGUF tensors use.
std::vector<uint8_t> WeightRow(GgmlType type, int n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(RowBytes(type, n));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  if (type == GgmlType::kQ4_K) {
    for (int b = 0; b < n / kQKK; ++b) {
      BlockQ4_K& blk = reinterpret_cast<BlockQ4_K*>(bytes.data())[b];
      blk.d = Fp32ToFp16(1e-4f + 2e-3f * u(rng));
      blk.dmin = Fp32ToFp16(1e-4f + 2e-3f * u(rng));
    }
    return bytes;
  }
  if (type == GgmlType::kQ6_K) {
    for (int b = 0; b < n / kQKK; ++b) {
      reinterpret_cast<BlockQ6_K*>(bytes.data())[b].d = Fp32ToFp16(1e-4f + 2e-3f * u(rng));
    }
    return bytes;
  }
  for (int b = 0; b < n / kQK; ++b) {
    if (type == GgmlType::kQ4_0) {
      reinterpret_cast<BlockQ4_0*>(bytes.data())[b].d = Fp32ToFp16(1e-3f + 0.02f * u(rng));
    } else if (type == GgmlType::kQ5_0) {
      reinterpret_cast<BlockQ5_0*>(bytes.data())[b].d = Fp32ToFp16(1e-3f + 0.02f * u(rng));
    } else if (type == GgmlType::kQ5_1) {
      BlockQ5_1& blk = reinterpret_cast<BlockQ5_1*>(bytes.data())[b];
      blk.d = Fp32ToFp16(1e-3f + 0.02f * u(rng));
      blk.m = Fp32ToFp16(-0.2f * u(rng));
    }
    if (type == GgmlType::kQ4_1) {
      BlockQ4_1& blk = reinterpret_cast<BlockQ4_1*>(bytes.data())[b];
      blk.d = Fp32ToFp16(1e-3f + 0.02f * u(rng));
      blk.m = Fp32ToFp16(-0.2f * u(rng));
    } else if (type == GgmlType::kQ8_0) {
      BlockQ8_0& blk = reinterpret_cast<BlockQ8_0*>(bytes.data())[b];
      blk.d = Fp32ToFp16(1e-4f + 1e-2f * u(rng));
      // -128 included: no quantizer writes it, but a file may hold it.
      for (int8_t& q : blk.qs) q = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
    }
  }
  return bytes;
}

// n_rows activation rows of n elements with growing magnitudes, quantized
// for `type`'s weights.
std::vector<uint8_t> ActivationRows(GgmlType type, int n, int n_rows, std::mt19937& rng) {
  const GgmlType act_type = ActivationTypeFor(type);
  const size_t row_bytes = RowBytes(act_type, n);
  std::vector<uint8_t> x(row_bytes * n_rows);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> f(n);
  for (int t = 0; t < n_rows; ++t) {
    for (float& v : f) v = g(rng) * (t + 1);
    QuantizeRow(act_type, f.data(), x.data() + t * row_bytes, n);
  }
  return x;
}

// Row lengths with an odd number of blocks (1, 3, 9 and 25 blocks of 32;
// 1, 3, 5 and 9 super-blocks of 256).
std::vector<int> Lengths(GgmlType type) {
  if (TraitsOf(type).block_elems == kQKK) return {256, 768, 1280, 2304};
  return {32, 96, 288, 800};
}

class VecDotRowsTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(VecDotRowsTest, EveryRowEqualsTheSingleRowDotExactly) {
  const GgmlType type = GetParam();
  const VecDotRowsFn rows_dot = GetVecDotRows(type);
  if (rows_dot == nullptr) GTEST_SKIP() << "no multi-row kernel for this type on this CPU";
  std::mt19937 rng(11);
  const GgmlType act_type = ActivationTypeFor(type);
  for (int n : Lengths(type)) {
    for (int n_rows : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 19}) {
      const std::vector<uint8_t> w = WeightRow(type, n, rng);
      const size_t row_bytes = RowBytes(act_type, n);
      std::vector<uint8_t> x(row_bytes * n_rows);
      std::normal_distribution<float> g(0.0f, 1.0f);
      std::vector<float> f(n);
      for (int t = 0; t < n_rows; ++t) {
        for (float& v : f) v = g(rng) * (t + 1);
        QuantizeRow(act_type, f.data(), x.data() + t * row_bytes, n);
      }
      // Results land y_stride apart, as in a [tokens, rows] output.
      const int stride = 3;
      std::vector<float> got(n_rows * stride, -1.0f), want(n_rows * stride, -1.0f);
      rows_dot(w.data(), x.data(), row_bytes, n_rows, n, got.data(), stride);
      VecDotRowsReference(type, w.data(), x.data(), row_bytes, n_rows, n, want.data(), stride);
      for (int i = 0; i < n_rows * stride; ++i) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
            << TypeName(type) << " n=" << n << " rows=" << n_rows << " at " << i << ": "
            << got[i] << " vs " << want[i];
      }
    }
  }
}

TEST_P(VecDotRowsTest, PackedKernelEqualsTheSingleRowDotExactly) {
  const GgmlType type = GetParam();
  const PackedRowsKernel* kernel = GetPackedRowsKernel(type);
  if (kernel == nullptr) GTEST_SKIP() << "no packed kernel for this type on this CPU";
  std::mt19937 rng(12);
  for (int n : Lengths(type)) {
    for (int n_rows : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 19, 24}) {
      const std::vector<uint8_t> w = WeightRow(type, n, rng);
      const size_t rb = RowBytes(ActivationTypeFor(type), n);
      const std::vector<uint8_t> x = ActivationRows(type, n, n_rows, rng);
      constexpr int kGroup = PackedRowsKernel::kGroupRows;
      const int groups = (n_rows + kGroup - 1) / kGroup;
      // Garbage around the packed groups must not matter.
      std::vector<uint8_t> packed(kernel->group_bytes(n) * groups, 0xA5);
      for (int g = 0; g < groups; ++g) {
        kernel->pack_group(x.data() + g * kGroup * rb, rb, std::min(kGroup, n_rows - g * kGroup),
                           n, packed.data() + g * kernel->group_bytes(n));
      }
      const int stride = 3;
      std::vector<float> got(n_rows * stride, -1.0f), want(n_rows * stride, -1.0f);
      kernel->dot(w.data(), packed.data(), n_rows, n, got.data(), stride);
      VecDotRowsReference(type, w.data(), x.data(), rb, n_rows, n, want.data(), stride);
      for (int i = 0; i < n_rows * stride; ++i) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
            << TypeName(type) << " n=" << n << " rows=" << n_rows << " at " << i << ": "
            << got[i] << " vs " << want[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, VecDotRowsTest,
                         ::testing::Values(GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0,
                                           GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ4_K,
                                           GgmlType::kQ6_K),
                         [](const auto& info) { return std::string(TypeName(info.param)); });

}  // namespace
}  // namespace conclave::kernels::cpu
