#include "kernels/cpu/quantize.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <limits>
#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fp16.h"
#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {
namespace {

// --- Float64 reference decoders, written from REFERENCE.md section 2 -------

double H(Half h) { return Fp16ToFp32(h); }  // exact: every half is an f32

void RefQ4_0(const BlockQ4_0& b, double* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = ((b.qs[j] & 15) - 8) * H(b.d);
    y[j + 16] = ((b.qs[j] >> 4) - 8) * H(b.d);
  }
}
void RefQ4_1(const BlockQ4_1& b, double* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = (b.qs[j] & 15) * H(b.d) + H(b.m);
    y[j + 16] = (b.qs[j] >> 4) * H(b.d) + H(b.m);
  }
}
// Q5: the fifth bit of element j is bit j of qh read as a little-endian u32.
int Q5Value(const uint8_t* qs, const uint8_t* qh, int j) {
  const uint32_t bits = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (uint32_t{qh[3]} << 24);
  const int nib = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
  return nib | (((bits >> j) & 1) << 4);
}
void RefQ5_0(const BlockQ5_0& b, double* y) {
  for (int j = 0; j < 32; ++j) y[j] = (Q5Value(b.qs, b.qh, j) - 16) * H(b.d);
}
void RefQ5_1(const BlockQ5_1& b, double* y) {
  for (int j = 0; j < 32; ++j) y[j] = Q5Value(b.qs, b.qh, j) * H(b.d) + H(b.m);
}
void RefQ8_0(const BlockQ8_0& b, double* y) {
  for (int j = 0; j < 32; ++j) y[j] = b.qs[j] * H(b.d);
}
void RefQ4_K(const BlockQ4_K& b, double* y) {
  const uint8_t* s = b.scales;
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    if (j < 4) {
      sc = s[j] & 63;
      m = s[j + 4] & 63;
    } else {
      sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    const int c = j / 2;  // 64-chunk: low nibbles for even j, high for odd j
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = b.qs[32 * c + l];
      const int q = (j % 2 == 0) ? (byte & 15) : (byte >> 4);
      y[32 * j + l] = H(b.d) * sc * q - H(b.dmin) * m;
    }
  }
}
void RefQ6_K(const BlockQ6_K& b, double* y) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    const int8_t* sc = b.scales + 8 * half;
    double* out = y + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = H(b.d) * sc[is] * q1;
      out[l + 32] = H(b.d) * sc[is + 2] * q2;
      out[l + 64] = H(b.d) * sc[is + 4] * q3;
      out[l + 96] = H(b.d) * sc[is + 6] * q4;
    }
  }
}

// --- Random blocks ----------------------------------------------------------

class QuantizeTest : public ::testing::Test {
 protected:
  std::mt19937 rng_{20240611};
  uint8_t Byte() { return static_cast<uint8_t>(rng_()); }
  Half RandomScale(float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    return Fp32ToFp16(u(rng_));
  }
  template <typename Block>
  std::vector<Block> RandomBytes(int nb) {
    std::vector<Block> v(nb);
    auto* p = reinterpret_cast<uint8_t*>(v.data());
    for (size_t i = 0; i < v.size() * sizeof(Block); ++i) p[i] = Byte();
    return v;
  }
  std::vector<float> Activations(int n) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = g(rng_) * ((i % 37 == 5) ? 30.0f : 1.0f);
    return x;
  }
};

// Dequantized f32 values may differ from the float64 reference by the f32
// rounding of at most three operations (e.g. (d*sc)*q - dmin*m).
void ExpectClose(const std::vector<float>& got, const std::vector<double>& ref) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i], ref[i], 4e-7 * std::fabs(ref[i]) + 1e-12) << "element " << i;
  }
}

TEST_F(QuantizeTest, DequantizesQ4_0LikeTheReference) {
  const int nb = 24;
  auto w = RandomBytes<BlockQ4_0>(nb);
  for (auto& b : w) b.d = RandomScale(-0.05f, 0.05f);
  std::vector<float> got(nb * 32);
  std::vector<double> ref(nb * 32);
  DequantizeRow(GgmlType::kQ4_0, w.data(), got.data(), nb * 32);
  for (int i = 0; i < nb; ++i) RefQ4_0(w[i], &ref[32 * i]);
  ExpectClose(got, ref);
}

TEST_F(QuantizeTest, DequantizesQ4_1LikeTheReference) {
  const int nb = 24;
  auto w = RandomBytes<BlockQ4_1>(nb);
  for (auto& b : w) {
    b.d = RandomScale(1e-3f, 0.02f);
    b.m = RandomScale(-0.2f, 0.0f);
  }
  std::vector<float> got(nb * 32);
  std::vector<double> ref(nb * 32);
  DequantizeRow(GgmlType::kQ4_1, w.data(), got.data(), nb * 32);
  for (int i = 0; i < nb; ++i) RefQ4_1(w[i], &ref[32 * i]);
  // q*d + m cancels: compare against the magnitude of the terms.
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i], ref[i], 4e-7 * 0.5) << i;
  }
}

TEST_F(QuantizeTest, DequantizesQ5_0LikeTheReference) {
  const int nb = 24;
  auto w = RandomBytes<BlockQ5_0>(nb);
  for (auto& b : w) b.d = RandomScale(-0.05f, 0.05f);
  std::vector<float> got(nb * 32);
  std::vector<double> ref(nb * 32);
  DequantizeRow(GgmlType::kQ5_0, w.data(), got.data(), nb * 32);
  for (int i = 0; i < nb; ++i) RefQ5_0(w[i], &ref[32 * i]);
  ExpectClose(got, ref);
}

// Every element of every block must see its own fifth bit: one set bit at a
// time, each element moves by exactly 16*d.
TEST_F(QuantizeTest, Q5_0FifthBitsBelongToTheirElements) {
  for (int bit = 0; bit < 32; ++bit) {
    BlockQ5_0 b{};
    b.d = Fp32ToFp16(1.0f);
    b.qh[bit / 8] = static_cast<uint8_t>(1 << (bit % 8));
    float y[32];
    DequantizeRow(GgmlType::kQ5_0, &b, y, 32);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], j == bit ? 0.0f : -16.0f) << bit << " " << j;
  }
}

TEST_F(QuantizeTest, DequantizesQ5_1LikeTheReference) {
  const int nb = 24;
  auto w = RandomBytes<BlockQ5_1>(nb);
  for (auto& b : w) {
    b.d = RandomScale(1e-3f, 0.01f);
    b.m = RandomScale(-0.2f, 0.0f);
  }
  std::vector<float> got(nb * 32);
  std::vector<double> ref(nb * 32);
  DequantizeRow(GgmlType::kQ5_1, w.data(), got.data(), nb * 32);
  for (int i = 0; i < nb; ++i) RefQ5_1(w[i], &ref[32 * i]);
  // q*d + m cancels: compare against the magnitude of the terms (<= 0.31).
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i], ref[i], 4e-7 * 0.5) << i;
  }
}

TEST_F(QuantizeTest, DequantizesQ8_0AndQ8_1LikeTheReference) {
  const int nb = 24;
  auto w = RandomBytes<BlockQ8_0>(nb);
  for (auto& b : w) b.d = RandomScale(1e-4f, 0.01f);
  std::vector<float> got(nb * 32);
  std::vector<double> ref(nb * 32);
  DequantizeRow(GgmlType::kQ8_0, w.data(), got.data(), nb * 32);
  for (int i = 0; i < nb; ++i) RefQ8_0(w[i], &ref[32 * i]);
  ExpectClose(got, ref);

  std::vector<BlockQ8_1> w1(nb);
  for (int i = 0; i < nb; ++i) {
    w1[i].d = w[i].d;
    w1[i].s = 0;
    std::memcpy(w1[i].qs, w[i].qs, 32);
  }
  DequantizeRow(GgmlType::kQ8_1, w1.data(), got.data(), nb * 32);
  ExpectClose(got, ref);
}

TEST_F(QuantizeTest, DequantizesQ4_KLikeTheReference) {
  const int nb = 6;
  auto w = RandomBytes<BlockQ4_K>(nb);
  for (auto& b : w) {
    b.d = RandomScale(1e-4f, 5e-3f);
    b.dmin = RandomScale(1e-4f, 5e-3f);
  }
  std::vector<float> got(nb * 256);
  std::vector<double> ref(nb * 256);
  DequantizeRow(GgmlType::kQ4_K, w.data(), got.data(), nb * 256);
  for (int i = 0; i < nb; ++i) RefQ4_K(w[i], &ref[256 * i]);
  // d*sc*q - dmin*m cancels; bound by the terms' magnitude (<= 63*15*5e-3).
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 4e-7 * 5.0) << i;
}

TEST_F(QuantizeTest, DequantizesQ6_KLikeTheReference) {
  const int nb = 6;
  auto w = RandomBytes<BlockQ6_K>(nb);
  for (auto& b : w) b.d = RandomScale(-2e-3f, 2e-3f);
  std::vector<float> got(nb * 256);
  std::vector<double> ref(nb * 256);
  DequantizeRow(GgmlType::kQ6_K, w.data(), got.data(), nb * 256);
  for (int i = 0; i < nb; ++i) RefQ6_K(w[i], &ref[256 * i]);
  ExpectClose(got, ref);
}

TEST_F(QuantizeTest, DequantizesFloatTypesExactly) {
  const std::vector<float> x = Activations(96);
  std::vector<Half> h(96);
  std::vector<BHalf> b(96);
  for (int i = 0; i < 96; ++i) {
    h[i] = Fp32ToFp16(x[i]);
    b[i] = Fp32ToBf16(x[i]);
  }
  std::vector<float> got(96);
  DequantizeRow(GgmlType::kF16, h.data(), got.data(), 96);
  for (int i = 0; i < 96; ++i) EXPECT_EQ(got[i], Fp16ToFp32(h[i]));
  DequantizeRow(GgmlType::kBF16, b.data(), got.data(), 96);
  for (int i = 0; i < 96; ++i) EXPECT_EQ(got[i], Bf16ToFp32(b[i]));
  DequantizeRow(GgmlType::kF32, x.data(), got.data(), 96);
  EXPECT_EQ(got, x);
}

// --- Activation quantizers --------------------------------------------------

// Q8_0/Q8_1: q = round(x*127/amax), |x*127/amax - q| <= 1/2, so
// |x - q*d| <= d/2 with d = amax/127; the stored f16 d adds |q|*|d - f16(d)|
// <= 127*d*2^-11. Bound: d*(1/2 + 127/2048) plus f32 slack.
TEST_F(QuantizeTest, Q8_0AndQ8_1ErrorsAreWithinHalfAStep) {
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ8_1}) {
    const int n = 32 * 40;
    const std::vector<float> x = Activations(n);
    std::vector<uint8_t> q(RowBytes(t, n));
    QuantizeRow(t, x.data(), q.data(), n);
    std::vector<float> back(n);
    DequantizeRow(t, q.data(), back.data(), n);
    for (int b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      const double d = amax / 127.0;
      for (int j = 0; j < 32; ++j) {
        EXPECT_LE(std::fabs(x[32 * b + j] - back[32 * b + j]),
                  d * (0.5 + 127.0 / 2048.0) * (1 + 1e-6))
            << "block " << b << " element " << j;
      }
    }
  }
}

// Q8_K keeps d in f32: |x - q*d| <= d/2 up to f32 rounding.
TEST_F(QuantizeTest, Q8_KErrorsAreWithinHalfAStepAndBsumsAddUp) {
  const int n = 256 * 5;
  const std::vector<float> x = Activations(n);
  std::vector<BlockQ8_K> q(n / 256);
  QuantizeRow(GgmlType::kQ8_K, x.data(), q.data(), n);
  std::vector<float> back(n);
  DequantizeRow(GgmlType::kQ8_K, q.data(), back.data(), n);
  for (int b = 0; b < n / 256; ++b) {
    const double step = std::fabs(q[b].d);
    for (int j = 0; j < 256; ++j) {
      EXPECT_LE(std::fabs(x[256 * b + j] - back[256 * b + j]), step * 0.5 * (1 + 1e-5));
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += q[b].qs[16 * g + j];
      EXPECT_EQ(q[b].bsums[g], sum);
    }
  }
}

// ggml's x86 quantize_row_q8_0/q8_1 round with _mm256_round_ps(_MM_ROUND_NEAREST):
// half to even, unlike roundf. With amax = 127 the multiplier is exactly 1.
TEST_F(QuantizeTest, Q8_0RoundsHalfToEvenLikeGgmlX86) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -0.5f;
  x[5] = 1.5f;
  BlockQ8_0 b;
  QuantizeRow(GgmlType::kQ8_0, x.data(), &b, 32);
  EXPECT_EQ(b.d, Fp32ToFp16(1.0f));
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], 2);
  EXPECT_EQ(b.qs[2], -4);
  EXPECT_EQ(b.qs[3], 0);
  EXPECT_EQ(b.qs[4], 0);
  EXPECT_EQ(b.qs[5], 2);
}

// Every q equals nearbyint(x * (127/amax)) (the x86 multiplier, not 1/d),
// d = f16(amax/127), s = f16(d_f32 * sum q).
TEST_F(QuantizeTest, Q8_1MatchesTheX86Formula) {
  const int n = 32 * 64;
  const std::vector<float> x = Activations(n);
  std::vector<BlockQ8_1> q(n / 32);
  QuantizeRow(GgmlType::kQ8_1, x.data(), q.data(), n);
  for (int b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127.0f;
    const float id = 127.0f / amax;
    EXPECT_EQ(q[b].d, Fp32ToFp16(d));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(q[b].qs[j], static_cast<int>(std::nearbyint(x[32 * b + j] * id)));
      sum += q[b].qs[j];
    }
    EXPECT_EQ(q[b].s, Fp32ToFp16(d * static_cast<float>(sum)));
  }
}

// quantize_row_q8_K_ref: iscale = -127/max where max keeps its sign, so the
// largest-magnitude element always becomes -127 and d = 1/iscale may be
// negative; q = min(127, nearest_int(iscale*x)), ties to even.
TEST_F(QuantizeTest, Q8_KUsesTheSignedMaxAndTiesToEven) {
  std::vector<float> x(256, 0.0f);
  x[10] = 127.0f;  // max > 0: iscale = -1
  x[11] = 2.5f;
  x[12] = -2.5f;
  x[13] = 3.5f;
  x[14] = -127.0f;  // same |x| later: the first one wins
  BlockQ8_K b;
  QuantizeRow(GgmlType::kQ8_K, x.data(), &b, 256);
  EXPECT_EQ(b.d, -1.0f);
  EXPECT_EQ(b.qs[10], -127);
  EXPECT_EQ(b.qs[11], -2);
  EXPECT_EQ(b.qs[12], 2);
  EXPECT_EQ(b.qs[13], -4);
  EXPECT_EQ(b.qs[14], 127);
  EXPECT_EQ(b.bsums[0], -127 - 2 + 2 - 4 + 127);
}

TEST_F(QuantizeTest, AllZeroBlocksQuantizeToZero) {
  std::vector<float> x(256, 0.0f);
  BlockQ8_0 b0;
  QuantizeRow(GgmlType::kQ8_0, x.data(), &b0, 32);
  EXPECT_EQ(b0.d, 0);
  for (int8_t v : b0.qs) EXPECT_EQ(v, 0);
  BlockQ8_1 b1;
  QuantizeRow(GgmlType::kQ8_1, x.data(), &b1, 32);
  EXPECT_EQ(b1.d, 0);
  EXPECT_EQ(b1.s, 0);
  BlockQ8_K bk;
  std::memset(&bk, 0x55, sizeof(bk));
  QuantizeRow(GgmlType::kQ8_K, x.data(), &bk, 256);
  EXPECT_EQ(bk.d, 0.0f);
  for (int8_t v : bk.qs) EXPECT_EQ(v, 0);
  for (int16_t v : bk.bsums) EXPECT_EQ(v, 0);
}

TEST_F(QuantizeTest, FloatActivationsRoundToNearestEven) {
  const std::vector<float> x = Activations(64);
  std::vector<Half> h(64);
  std::vector<BHalf> b(64);
  std::vector<float> f(64);
  QuantizeRow(GgmlType::kF16, x.data(), h.data(), 64);
  QuantizeRow(GgmlType::kBF16, x.data(), b.data(), 64);
  QuantizeRow(GgmlType::kF32, x.data(), f.data(), 64);
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(h[i], Fp32ToFp16(x[i]));
    EXPECT_EQ(b[i], Fp32ToBf16(x[i]));
  }
  EXPECT_EQ(f, x);
}

// QuantizeRow's vectorised Q8_0 / Q8_1 paths equal the portable code byte
// for byte, on ordinary rows and on the awkward ones: zeros, exact ties,
// values at the rounding edge, huge and tiny magnitudes, infinities, NaN.
TEST(QuantizeRowTest, VectorisedQ8EqualsThePortableCode) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 32 * (1 + trial % 7);
    std::vector<float> x(n);
    const float scale = std::pow(10.0f, static_cast<float>(trial % 13) - 6.0f);
    for (float& v : x) v = g(rng) * scale;
    if (trial % 5 == 1) std::fill(x.begin(), x.begin() + 32, 0.0f);
    if (trial % 5 == 2) {
      for (int j = 0; j < 32; ++j) x[j] = 0.5f * (j - 16);  // ties once scaled by 127/8
      x[3] = 127.0f;
    }
    if (trial % 11 == 3) x[rng() % n] = inf;
    if (trial % 11 == 4) x[rng() % n] = -inf;
    if (trial % 11 == 5) x[rng() % n] = nan;
    if (trial % 11 == 6) x[rng() % n] = 3e38f;
    for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ8_1}) {
      const size_t bytes = RowBytes(type, n);
      std::vector<uint8_t> got(bytes, 0xCD), want(bytes, 0xAB);
      QuantizeRow(type, x.data(), got.data(), n);
      QuantizeRowPortable(type, x.data(), want.data(), n);
      ASSERT_EQ(got, want) << TypeName(type) << " trial " << trial;
    }
  }
}

TEST(QuantizeTypesTest, ActivationTypesFollowGgmlCpuVecDotType) {
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ4_0), GgmlType::kQ8_0);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ4_1), GgmlType::kQ8_1);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ5_0), GgmlType::kQ8_0);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ5_1), GgmlType::kQ8_1);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ8_0), GgmlType::kQ8_0);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ4_K), GgmlType::kQ8_K);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kQ6_K), GgmlType::kQ8_K);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kF16), GgmlType::kF16);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kBF16), GgmlType::kBF16);
  EXPECT_EQ(ActivationTypeFor(GgmlType::kF32), GgmlType::kF32);
}

TEST(QuantizeTypesTest, SupportedWeightTypes) {
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_0,
                     GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                     GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    EXPECT_TRUE(IsSupportedWeightType(t)) << TypeName(t);
  }
  for (GgmlType t : {GgmlType::kQ8_1, GgmlType::kQ8_K, GgmlType::kQ2_K, GgmlType::kQ5_K}) {
    EXPECT_FALSE(IsSupportedWeightType(t)) << TypeName(t);
  }
}

}  // namespace
}  // namespace conclave::kernels::cpu
