// RMSNorm, RoPE and the gated activations against float64 references.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/activations.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"

namespace conclave::kernels::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(RmsNormTest, MatchesAFloat64Reference) {
  for (int64_t n : {1, 7, 64, 576, 640, 1001}) {
    const int64_t rows = 3;
    std::vector<float> x = Random(rows * n, 1, 3.0f), w = Random(n, 2), y(rows * n);
    RmsNorm(x.data(), w.data(), y.data(), rows, n, 1e-6f);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < n; ++i) ss += double{x[r * n + i]} * x[r * n + i];
      const double scale = 1.0 / std::sqrt(ss / n + 1e-6);
      for (int64_t i = 0; i < n; ++i) {
        const double want = x[r * n + i] * scale * w[i];
        // Three float roundings (mean, scale, two products): ~4 ulp.
        EXPECT_NEAR(y[r * n + i], want, 1e-6 * std::abs(want) + 1e-7) << n;
      }
    }
  }
}

TEST(RmsNormTest, RunsInPlace) {
  std::vector<float> x = Random(64, 3), w = Random(64, 4), y(64);
  RmsNorm(x.data(), w.data(), y.data(), 1, 64, 1e-5f);
  RmsNorm(x.data(), w.data(), x.data(), 1, 64, 1e-5f);
  EXPECT_EQ(x, y);
}

double RopeAngle(int64_t pos, int k, int n_rot, double base) {
  return pos * std::pow(base, -2.0 * k / n_rot);
}

TEST(RopeTest, RotatesInterleavedPairsByTheReferenceAngle) {
  const int heads = 3, head_dim = 64, n_rot = 64;
  for (int64_t pos : {0, 1, 17, 511, 4000}) {
    std::vector<float> x = Random(heads * head_dim, 5), y = x;
    Rope(y.data(), heads, head_dim, n_rot, pos, 100000.0f, /*neox=*/false);
    for (int h = 0; h < heads; ++h) {
      for (int k = 0; k < n_rot / 2; ++k) {
        const double a = RopeAngle(pos, k, n_rot, 100000.0);
        const double x0 = x[h * head_dim + 2 * k], x1 = x[h * head_dim + 2 * k + 1];
        // The angle is built in float (as ggml): error grows with pos * k.
        const double tol = 1e-6 * (1 + std::abs(a)) * (std::abs(x0) + std::abs(x1)) + 1e-6;
        EXPECT_NEAR(y[h * head_dim + 2 * k], x0 * std::cos(a) - x1 * std::sin(a), tol);
        EXPECT_NEAR(y[h * head_dim + 2 * k + 1], x0 * std::sin(a) + x1 * std::cos(a), tol);
      }
    }
  }
}

TEST(RopeTest, NeoxRotatesHalvesAndLeavesUnrotatedDimsAlone) {
  const int heads = 2, head_dim = 16, n_rot = 8;
  const int64_t pos = 9;
  std::vector<float> x = Random(heads * head_dim, 6), y = x;
  Rope(y.data(), heads, head_dim, n_rot, pos, 10000.0f, /*neox=*/true);
  for (int h = 0; h < heads; ++h) {
    const float* xin = x.data() + h * head_dim;
    const float* yout = y.data() + h * head_dim;
    for (int k = 0; k < n_rot / 2; ++k) {
      const double a = RopeAngle(pos, k, n_rot, 10000.0);
      EXPECT_NEAR(yout[k], xin[k] * std::cos(a) - xin[k + n_rot / 2] * std::sin(a), 1e-5);
      EXPECT_NEAR(yout[k + n_rot / 2], xin[k] * std::sin(a) + xin[k + n_rot / 2] * std::cos(a),
                  1e-5);
    }
    for (int i = n_rot; i < head_dim; ++i) EXPECT_EQ(yout[i], xin[i]);
  }
}

TEST(ActivationsTest, SwiGluMatchesSiluTimesUp) {
  std::vector<float> g = Random(1000, 7, 4.0f), u = Random(1000, 8), out(1000);
  SwiGlu(g.data(), u.data(), out.data(), 1000);
  for (int i = 0; i < 1000; ++i) {
    const double want = g[i] / (1.0 + std::exp(-double{g[i]})) * u[i];
    EXPECT_NEAR(out[i], want, 1e-6 * std::abs(want) + 1e-7);
  }
}

TEST(ActivationsTest, GeGluFollowsTheTanhGeluWithinFp16Rounding) {
  std::vector<float> g = Random(2000, 9, 5.0f), u = Random(2000, 10), out(2000);
  g.push_back(-12.0f);
  u.push_back(1.0f);
  g.push_back(11.0f);
  u.push_back(2.0f);
  out.resize(g.size());
  GeGlu(g.data(), u.data(), out.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i];
    const double gelu = 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    const double want = (x <= -10 ? 0.0 : x >= 10 ? x : gelu) * u[i];
    // x and gelu(x) are each rounded to fp16 (relative 2^-11) and
    // |d gelu / dx| <= 1.13.
    const double tol = (std::abs(x) * 1.13 + std::abs(gelu)) * std::ldexp(1.0, -11) * std::abs(u[i]) + 1e-6;
    EXPECT_NEAR(out[i], want, tol) << "x=" << x;
  }
}

}  // namespace
}  // namespace conclave::kernels::cpu
