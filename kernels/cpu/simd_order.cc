#include "kernels/cpu/simd_order.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace conclave::kernels::cpu {
namespace {

// Constants of ggml_v_expf (after ARM's optimized-routines expf).
constexpr float kShift = 0x1.8p23f;
constexpr float kInvLn2 = 0x1.715476p+0f;
constexpr float kLn2Hi = 0x1.62e4p-1f;
constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
constexpr float kC0 = 0x1.0e4020p-7f;
constexpr float kC1 = 0x1.573e2ep-5f;
constexpr float kC2 = 0x1.555e66p-3f;
constexpr float kC3 = 0x1.fffdb6p-2f;
constexpr float kC4 = 0x1.ffffecp-1f;

float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t FloatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// AVX-512 variant: polynomial includes the 1, result scaled by 2^n
// (vscalefps); |n| > 192 saturates to 0 or inf.
float ExpfAvx512(float x) {
  const float z = std::fma(x, kInvLn2, kShift);
  const float n = z - kShift;
  const float b = std::fma(-n, kLn2Lo, std::fma(-n, kLn2Hi, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(kC0, b, kC1), u, std::fma(kC2, b, kC3)), u,
                           std::fma(kC4, b, 1.0f));
  if (!(std::fabs(n) <= 192.0f)) return n <= 0.0f ? 0.0f : INFINITY;
  return std::ldexp(j, static_cast<int>(n));
}

// AVX2 variant: polynomial without the 1, result k + k*j with k = 2^n built
// from the exponent bits of z; special scaling when |n| > 126.
float ExpfAvx2(float x) {
  const float z = std::fma(x, kInvLn2, kShift);
  const float n = z - kShift;
  const float b = std::fma(-n, kLn2Lo, std::fma(-n, kLn2Hi, x));
  const uint32_t e = FloatToBits(z) << 23;
  const float k = BitsToFloat(e + FloatToBits(1.0f));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(kC0, b, kC1), u, std::fma(kC2, b, kC3)), u, kC4 * b);
  if (!(std::fabs(n) > 126.0f)) return std::fma(j, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = BitsToFloat(g + 0x7f000000u);
  const float s2 = BitsToFloat(e - g);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

}  // namespace

SimdLevel DetectSimdLevel() {
  static const SimdLevel level = [] {
    if (const char* forced = std::getenv("CONCLAVE_SIMD_LEVEL")) {
      if (std::strcmp(forced, "scalar") == 0) return SimdLevel::kScalar;
      if (std::strcmp(forced, "avx2") == 0) return SimdLevel::kAvx2;
      if (std::strcmp(forced, "avx512") == 0) return SimdLevel::kAvx512;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
      return SimdLevel::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::kAvx2;
#endif
    return SimdLevel::kScalar;
  }();
  return level;
}

int LanesOf(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return 16;
    case SimdLevel::kAvx2: return 8;
    case SimdLevel::kScalar: return 1;
  }
  return 1;
}

float GgmlExpf(SimdLevel level, float x) {
  switch (level) {
    case SimdLevel::kAvx512: return ExpfAvx512(x);
    case SimdLevel::kAvx2: return ExpfAvx2(x);
    case SimdLevel::kScalar: return expf(x);
  }
  return expf(x);
}

float HalvingSum(const float* lanes, int n) {
  float t[16];
  for (int i = 0; i < n; ++i) t[i] = lanes[i];
  for (int width = n / 2; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) t[i] = t[i + width] + t[i];
  }
  return t[0];
}

float TinyBlasDot(SimdLevel level, const float* a, const float* b, int n) {
  const int lanes = LanesOf(level);
  if (lanes == 1) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
    return static_cast<float>(sum);
  }
  float acc[16] = {};
  int i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (int l = 0; l < lanes; ++l) acc[l] = std::fma(a[i + l], b[i + l], acc[l]);
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] = std::fma(a[i], b[i], acc[l]);  // tail
  return HalvingSum(acc, lanes);
}

float VecDotF16(SimdLevel level, const float* a, const float* b, int n) {
  const int lanes = LanesOf(level);
  if (lanes == 1) return TinyBlasDot(level, a, b, n);
  const int step = 4 * lanes;
  const int whole = n / step * step;
  float acc[4][16] = {};
  for (int i = 0; i < whole; ++i) {
    float& slot = acc[(i / lanes) % 4][i % lanes];
    slot = std::fma(a[i], b[i], slot);
  }
  float sum[16];
  for (int l = 0; l < lanes; ++l) sum[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  double total = HalvingSum(sum, lanes);
  for (int i = whole; i < n; ++i) total += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(total);
}

}  // namespace conclave::kernels::cpu
