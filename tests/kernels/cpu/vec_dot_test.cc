#include "kernels/cpu/vec_dot.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"
#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// The AVX2 table, defined in vec_dot_avx2.cc (not part of the public header).
VecDotFn GetVecDotAvx2(GgmlType wtype);

namespace {

bool HasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

// Realistic random weight rows: f16 scales in the ranges real GGUF tensors
// use, uniformly random quant bits.
std::vector<uint8_t> RandomWeights(GgmlType t, int n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(RowBytes(t, n));
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  auto scale = [&](float lo, float hi) { return Fp32ToFp16(lo + (hi - lo) * u(rng)); };
  std::normal_distribution<float> g(0.0f, 0.05f);
  switch (t) {
    case GgmlType::kQ4_0:
      for (auto& b : std::span(reinterpret_cast<BlockQ4_0*>(bytes.data()), n / 32)) b.d = scale(-0.05f, 0.05f);
      break;
    case GgmlType::kQ4_1:
      for (auto& b : std::span(reinterpret_cast<BlockQ4_1*>(bytes.data()), n / 32)) {
        b.d = scale(1e-3f, 0.02f);
        b.m = scale(-0.2f, 0.0f);
      }
      break;
    case GgmlType::kQ8_0:
      for (auto& b : std::span(reinterpret_cast<BlockQ8_0*>(bytes.data()), n / 32)) {
        b.d = scale(1e-4f, 1e-2f);
        for (auto& q : b.qs) q = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
      }
      break;
    case GgmlType::kQ4_K:
      for (auto& b : std::span(reinterpret_cast<BlockQ4_K*>(bytes.data()), n / 256)) {
        b.d = scale(1e-4f, 5e-3f);
        b.dmin = scale(1e-4f, 5e-3f);
      }
      break;
    case GgmlType::kQ6_K:
      for (auto& b : std::span(reinterpret_cast<BlockQ6_K*>(bytes.data()), n / 256)) b.d = scale(-2e-3f, 2e-3f);
      break;
    case GgmlType::kF32: {
      auto* f = reinterpret_cast<float*>(bytes.data());
      for (int i = 0; i < n; ++i) f[i] = g(rng);
      break;
    }
    case GgmlType::kF16: {
      auto* h = reinterpret_cast<Half*>(bytes.data());
      for (int i = 0; i < n; ++i) h[i] = Fp32ToFp16(g(rng));
      break;
    }
    case GgmlType::kBF16: {
      auto* h = reinterpret_cast<BHalf*>(bytes.data());
      for (int i = 0; i < n; ++i) h[i] = Fp32ToBf16(g(rng));
      break;
    }
    default:
      ADD_FAILURE() << "no generator for " << TypeName(t);
  }
  return bytes;
}

// Activations like a residual stream: N(0,1) with a few large outliers.
std::vector<float> RandomActivations(int n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = g(rng) * (i % 61 == 7 ? 25.0f : 1.0f);
  return x;
}

struct Reference {
  double value;      // exact-ish dot in float64
  double magnitude;  // sum of |terms| the kernel adds in float
};

// Float64 dot of the dequantized rows. For Q4_1 the kernel uses the stored
// s = f16(d*sum q) for the offset term (as ggml does), so the reference does
// too; for Q4_1 and Q4_K the magnitude counts the scale and offset parts
// separately, since they cancel.
Reference ReferenceDot(GgmlType t, const std::vector<uint8_t>& w, const std::vector<uint8_t>& xq,
                       int n) {
  std::vector<float> wd(n), xd(n);
  DequantizeRow(t, w.data(), wd.data(), n);
  DequantizeRow(ActivationTypeFor(t), xq.data(), xd.data(), n);
  Reference r{0.0, 0.0};
  if (t == GgmlType::kQ4_1) {
    const auto* wb = reinterpret_cast<const BlockQ4_1*>(w.data());
    const auto* xb = reinterpret_cast<const BlockQ8_1*>(xq.data());
    for (int b = 0; b < n / 32; ++b) {
      const double dw = Fp16ToFp32(wb[b].d), mw = Fp16ToFp32(wb[b].m);
      const double dx = Fp16ToFp32(xb[b].d), sx = Fp16ToFp32(xb[b].s);
      for (int j = 0; j < 16; ++j) {
        const int lo = wb[b].qs[j] & 15, hi = wb[b].qs[j] >> 4;
        r.value += dw * lo * dx * xb[b].qs[j] + dw * hi * dx * xb[b].qs[j + 16];
        r.magnitude += std::fabs(dw * lo * dx * xb[b].qs[j]) +
                       std::fabs(dw * hi * dx * xb[b].qs[j + 16]);
      }
      r.value += mw * sx;
      r.magnitude += std::fabs(mw * sx) + std::fabs(mw) * std::fabs(dx) * 32 * 127;
    }
    return r;
  }
  for (int i = 0; i < n; ++i) {
    r.value += static_cast<double>(wd[i]) * xd[i];
    r.magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
  }
  if (t == GgmlType::kQ4_K) {
    // Each element is d*sc*q - dmin*m; both parts can reach 63*15*d.
    const auto* wb = reinterpret_cast<const BlockQ4_K*>(w.data());
    for (int i = 0; i < n; ++i) {
      const BlockQ4_K& b = wb[i / 256];
      r.magnitude += (63.0 * 15 * Fp16ToFp32(b.d) + 63.0 * Fp16ToFp32(b.dmin)) * std::fabs(xd[i]);
    }
  }
  return r;
}

struct Case {
  GgmlType type;
  std::vector<int> sizes;
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {GgmlType::kQ4_0, {32, 64, 96, 256, 512, 768, 1536, 2304}},
      {GgmlType::kQ4_1, {32, 64, 96, 256, 512, 768, 1536, 2304}},
      {GgmlType::kQ8_0, {32, 64, 96, 256, 512, 768, 1536, 2304}},
      {GgmlType::kQ4_K, {256, 512, 768, 1536, 2304}},
      {GgmlType::kQ6_K, {256, 512, 768, 1536, 2304}},
      {GgmlType::kF32, {1, 7, 32, 33, 96, 255, 768, 2304}},
      {GgmlType::kF16, {1, 7, 32, 33, 96, 255, 768, 2304}},
      {GgmlType::kBF16, {1, 7, 32, 33, 96, 255, 768, 2304}},
  };
  return cases;
}

// Tolerance: integer block sums are exact; what remains is f32 rounding of
// a few products per block (scales, d_w*d_x) and of summing at most
// n/32 <= 72 block terms per lane plus an 8-lane reduction, each step adding
// at most 2^-24 of the running |sum| <= magnitude. 80 steps * 6e-8 ~ 5e-6;
// 1e-5 * magnitude leaves a factor 2 of slack and is still ~1000x tighter
// than a wrong scale, nibble order or sign would produce.
constexpr double kRelTol = 1e-5;

void CheckKernel(const char* label, VecDotFn fn, GgmlType t, int n, std::mt19937& rng) {
  const std::vector<uint8_t> w = RandomWeights(t, n, rng);
  const std::vector<float> x = RandomActivations(n, rng);
  std::vector<uint8_t> xq(RowBytes(ActivationTypeFor(t), n));
  QuantizeRow(ActivationTypeFor(t), x.data(), xq.data(), n);
  const Reference ref = ReferenceDot(t, w, xq, n);
  const float got = fn(w.data(), xq.data(), n);
  EXPECT_NEAR(got, ref.value, kRelTol * ref.magnitude + 1e-30)
      << label << " " << TypeName(t) << " n=" << n;
}

TEST(VecDotTest, ScalarMatchesTheFloat64Reference) {
  std::mt19937 rng(7);
  for (const Case& c : Cases()) {
    for (int n : c.sizes) {
      for (int rep = 0; rep < 3; ++rep) CheckKernel("scalar", GetVecDotScalar(c.type), c.type, n, rng);
    }
  }
}

TEST(VecDotTest, Avx2MatchesTheFloat64Reference) {
  if (!HasAvx2()) GTEST_SKIP() << "no AVX2/FMA/F16C";
  std::mt19937 rng(8);
  for (const Case& c : Cases()) {
    VecDotFn fn = GetVecDotAvx2(c.type);
    ASSERT_NE(fn, nullptr) << TypeName(c.type);
    for (int n : c.sizes) {
      for (int rep = 0; rep < 3; ++rep) CheckKernel("avx2", fn, c.type, n, rng);
    }
  }
}

TEST(VecDotTest, Avx2AgreesWithScalar) {
  if (!HasAvx2()) GTEST_SKIP() << "no AVX2/FMA/F16C";
  std::mt19937 rng(9);
  for (const Case& c : Cases()) {
    for (int n : c.sizes) {
      const std::vector<uint8_t> w = RandomWeights(c.type, n, rng);
      const std::vector<float> x = RandomActivations(n, rng);
      std::vector<uint8_t> xq(RowBytes(ActivationTypeFor(c.type), n));
      QuantizeRow(ActivationTypeFor(c.type), x.data(), xq.data(), n);
      const Reference ref = ReferenceDot(c.type, w, xq, n);
      const float a = GetVecDotAvx2(c.type)(w.data(), xq.data(), n);
      const float s = GetVecDotScalar(c.type)(w.data(), xq.data(), n);
      EXPECT_NEAR(a, s, 2 * kRelTol * ref.magnitude + 1e-30) << TypeName(c.type) << " n=" << n;
    }
  }
}

TEST(VecDotTest, DispatchPicksAvx2WhenTheCpuHasIt) {
  for (const Case& c : Cases()) {
    if (HasAvx2()) {
      EXPECT_EQ(GetVecDot(c.type), GetVecDotAvx2(c.type)) << TypeName(c.type);
    } else {
      EXPECT_EQ(GetVecDot(c.type), GetVecDotScalar(c.type)) << TypeName(c.type);
    }
  }
}

// Exactness on small integers: every product and sum is representable.
TEST(VecDotTest, Q8_0DotOfKnownBlocksIsExact) {
  std::vector<float> a(64), b(64);
  for (int i = 0; i < 64; ++i) {
    a[i] = static_cast<float>((i % 2 ? 1 : -1) * (i % 8));
    b[i] = static_cast<float>(i % 5 - 2);
  }
  a[0] = 127.0f;  // d = 1 exactly in both blocks
  a[32] = 127.0f;
  b[1] = 127.0f;
  b[33] = 127.0f;
  std::vector<BlockQ8_0> qa(2), qb(2);
  QuantizeRow(GgmlType::kQ8_0, a.data(), qa.data(), 64);
  QuantizeRow(GgmlType::kQ8_0, b.data(), qb.data(), 64);
  double expect = 0;
  for (int i = 0; i < 64; ++i) expect += static_cast<double>(a[i]) * b[i];
  EXPECT_EQ(GetVecDotScalar(GgmlType::kQ8_0)(qa.data(), qb.data(), 64), expect);
  EXPECT_EQ(VecDot(GgmlType::kQ8_0, qa.data(), qb.data(), 64), expect);
}

}  // namespace
}  // namespace conclave::kernels::cpu
