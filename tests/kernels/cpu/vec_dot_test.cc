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
    case GgmlType::kQ5_0:
      for (auto& b : std::span(reinterpret_cast<BlockQ5_0*>(bytes.data()), n / 32)) b.d = scale(-0.05f, 0.05f);
      break;
    case GgmlType::kQ5_1:
      for (auto& b : std::span(reinterpret_cast<BlockQ5_1*>(bytes.data()), n / 32)) {
        b.d = scale(1e-3f, 0.01f);
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

// Unsigned quant j of a Q4_1 / Q5_1 block (nibble, plus the fifth bit from
// qh, bit j of a little-endian u32, for Q5_1).
int Q4Value(const uint8_t* qs, int j) { return j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4); }
int Q5Value(const uint8_t* qs, const uint8_t* qh, int j) {
  return Q4Value(qs, j) | (((qh[j / 8] >> (j % 8)) & 1) << 4);
}

// Reference for the types with a min (w = q*d + m): the kernels use the
// stored s = f16(d*sum q) for the offset term (as ggml does), so the
// reference does too; the magnitude counts the scale and offset parts
// separately, since they cancel.
template <typename Block, typename QuantOf>
Reference ReferenceDotWithMin(const std::vector<uint8_t>& w, const std::vector<uint8_t>& xq,
                              int n, QuantOf quant_of) {
  const auto* wb = reinterpret_cast<const Block*>(w.data());
  const auto* xb = reinterpret_cast<const BlockQ8_1*>(xq.data());
  Reference r{0.0, 0.0};
  for (int b = 0; b < n / 32; ++b) {
    const double dw = Fp16ToFp32(wb[b].d), mw = Fp16ToFp32(wb[b].m);
    const double dx = Fp16ToFp32(xb[b].d), sx = Fp16ToFp32(xb[b].s);
    for (int j = 0; j < 32; ++j) {
      const double term = dw * quant_of(wb[b], j) * dx * xb[b].qs[j];
      r.value += term;
      r.magnitude += std::fabs(term);
    }
    r.value += mw * sx;
    r.magnitude += std::fabs(mw * sx) + std::fabs(mw) * std::fabs(dx) * 32 * 127;
  }
  return r;
}

// Float64 dot of the dequantized rows; for Q4_K the magnitude counts the
// scale and min parts separately, since they cancel.
Reference ReferenceDot(GgmlType t, const std::vector<uint8_t>& w, const std::vector<uint8_t>& xq,
                       int n) {
  if (t == GgmlType::kQ4_1) {
    return ReferenceDotWithMin<BlockQ4_1>(
        w, xq, n, [](const BlockQ4_1& b, int j) { return Q4Value(b.qs, j); });
  }
  if (t == GgmlType::kQ5_1) {
    return ReferenceDotWithMin<BlockQ5_1>(
        w, xq, n, [](const BlockQ5_1& b, int j) { return Q5Value(b.qs, b.qh, j); });
  }
  std::vector<float> wd(n), xd(n);
  DequantizeRow(t, w.data(), wd.data(), n);
  DequantizeRow(ActivationTypeFor(t), xq.data(), xd.data(), n);
  Reference r{0.0, 0.0};
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
      {GgmlType::kQ5_0, {32, 64, 96, 160, 640, 768, 1536, 2304}},
      {GgmlType::kQ5_1, {32, 64, 96, 160, 640, 768, 1536, 2304}},
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

// Q5 weights with d = 1 (and m = 0) hold small integers; against Q8
// activations with d = 1 every product and sum is exact, so the scalar and
// AVX2 kernels must both return the integer dot, including elements whose
// fifth bit is set in every byte of qh.
TEST(VecDotTest, Q5DotsOfKnownBlocksAreExact) {
  std::vector<float> xf(64);
  for (int i = 0; i < 64; ++i) xf[i] = static_cast<float>(i % 9 - 4);
  xf[0] = 127.0f;  // d_x = 1 in both blocks
  xf[32] = -127.0f;
  std::vector<BlockQ8_0> x0(2);
  std::vector<BlockQ8_1> x1(2);
  QuantizeRow(GgmlType::kQ8_0, xf.data(), x0.data(), 64);
  QuantizeRow(GgmlType::kQ8_1, xf.data(), x1.data(), 64);

  std::vector<BlockQ5_0> w0(2);
  std::vector<BlockQ5_1> w1(2);
  double expect0 = 0, expect1 = 0;
  for (int b = 0; b < 2; ++b) {
    w0[b].d = w1[b].d = Fp32ToFp16(1.0f);
    w1[b].m = 0;
    for (int j = 0; j < 16; ++j) {
      w0[b].qs[j] = w1[b].qs[j] = static_cast<uint8_t>((j * 7 + b) % 16 | ((j * 3) % 16) << 4);
    }
    const uint8_t qh[4] = {0xA5, static_cast<uint8_t>(0x3C + b), 0x81, 0xF0};
    for (int k = 0; k < 4; ++k) w0[b].qh[k] = w1[b].qh[k] = qh[k];
    for (int j = 0; j < 32; ++j) {
      const int q = Q5Value(w0[b].qs, w0[b].qh, j);
      expect0 += static_cast<double>(q - 16) * xf[32 * b + j];
      expect1 += static_cast<double>(q) * xf[32 * b + j];
    }
  }
  EXPECT_EQ(GetVecDotScalar(GgmlType::kQ5_0)(w0.data(), x0.data(), 64), expect0);
  EXPECT_EQ(GetVecDotScalar(GgmlType::kQ5_1)(w1.data(), x1.data(), 64), expect1);
  EXPECT_EQ(VecDot(GgmlType::kQ5_0, w0.data(), x0.data(), 64), expect0);
  EXPECT_EQ(VecDot(GgmlType::kQ5_1, w1.data(), x1.data(), 64), expect1);
}

}  // namespace
}  // namespace conclave::kernels::cpu
