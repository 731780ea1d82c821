#include "kernels/cpu/fp16.h"

#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::kernels::cpu {
namespace {

// IEEE binary16 decoded independently in double: (-1)^s * 2^(e-15) * 1.m,
// or 2^-14 * 0.m for e == 0.
double HalfValue(uint16_t h) {
  const int sign = h >> 15;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  if (e == 0x1f) v = m == 0 ? INFINITY : NAN;
  return sign ? -v : v;
}

bool IsHalfNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

float Bits(uint32_t u) { return std::bit_cast<float>(u); }

TEST(Fp16Test, EveryHalfDecodesToItsIeeeValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Fp16ToFp32(static_cast<Half>(h));
    if (IsHalfNan(h)) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_EQ(std::signbit(f), (h >> 15) != 0) << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), HalfValue(h)) << h;
      EXPECT_EQ(std::signbit(f), (h >> 15) != 0) << h;
    }
  }
}

TEST(Fp16Test, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const Half back = Fp32ToFp16(Fp16ToFp32(static_cast<Half>(h)));
    if (IsHalfNan(h)) {
      EXPECT_TRUE(IsHalfNan(back)) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
      EXPECT_NE(back & 0x200, 0) << "NaN must come back quiet: " << h;
    } else {
      EXPECT_EQ(back, h) << h;
    }
  }
}

TEST(Fp16Test, TiesRoundToEven) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10 (odd): down to 1.
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9: up.
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  // Just above a tie rounds up.
  EXPECT_EQ(Fp32ToFp16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  EXPECT_EQ(Fp32ToFp16(-(1.0f + std::ldexp(1.0f, -11))), 0xbc00);
  // Largest finite half, the overflow tie 65520 (-> inf) and just below it.
  EXPECT_EQ(Fp32ToFp16(65504.0f), 0x7bff);
  EXPECT_EQ(Fp32ToFp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-1e9f), 0xfc00);
  EXPECT_EQ(Fp32ToFp16(INFINITY), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-INFINITY), 0xfc00);
  // Subnormals: 2^-25 ties to 0, 3*2^-25 ties to 2 (even), 2^-24 is 1.
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(Fp32ToFp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(Fp32ToFp16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(Fp32ToFp16(-std::ldexp(1.0f, -26)), 0x8000);
  // Largest subnormal + half an ulp ties up into the smallest normal.
  EXPECT_EQ(Fp32ToFp16(std::ldexp(2047.0f, -25)), 0x0400);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(Fp32ToFp16(-0.0f), 0x8000);
  EXPECT_TRUE(IsHalfNan(Fp32ToFp16(NAN)));
}

__attribute__((target("f16c"))) uint16_t HardwareToHalf(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, 0));
}
__attribute__((target("f16c"))) float HardwareToFloat(uint16_t h) {
  return _cvtsh_ss(h);
}

// F16C's vcvtps2ph with rounding mode 0 is what ggml uses on x86.
TEST(Fp16Test, MatchesF16cOnEveryHalfAndRandomFloats) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float mine = Fp16ToFp32(static_cast<Half>(h));
    const float hw = HardwareToFloat(static_cast<uint16_t>(h));
    EXPECT_EQ(std::bit_cast<uint32_t>(mine), std::bit_cast<uint32_t>(hw)) << h;
  }
  std::mt19937 rng(1234);
  std::vector<uint32_t> inputs;
  for (int i = 0; i < 2000000; ++i) inputs.push_back(rng());
  // Dense around the half range and its boundaries, where rounding matters.
  for (uint32_t u = 0x33000000u - 4096; u < 0x38800000u + 4096; u += 97) inputs.push_back(u);
  for (uint32_t u = 0x477fe000u - 8192; u < 0x47800000u + 8192; ++u) inputs.push_back(u);
  for (uint32_t u : inputs) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const float f = Bits(u ^ s);
      EXPECT_EQ(Fp32ToFp16(f), HardwareToHalf(f)) << std::hex << (u ^ s);
    }
  }
}

TEST(Bf16Test, EveryBf16RoundTripsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToFp32(static_cast<BHalf>(h));
    EXPECT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(Fp32ToBf16(f), h) << h;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEvenAndKeepsNanQuiet) {
  EXPECT_EQ(Fp32ToBf16(Bits(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(Fp32ToBf16(Bits(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(Fp32ToBf16(Bits(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(Fp32ToBf16(Bits(0x3f807fffu)), 0x3f80);  // below the tie
  EXPECT_EQ(Fp32ToBf16(Bits(0x7f7fffffu)), 0x7f80);  // max float -> inf
  EXPECT_EQ(Fp32ToBf16(Bits(0x00018000u)), 0x0002);  // subnormal kept
  const BHalf nan = Fp32ToBf16(Bits(0x7f800001u));    // signalling NaN
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x0040, 0);
  EXPECT_EQ(Fp32ToBf16(Bits(0xff800000u)), 0xff80);  // -inf
}

}  // namespace
}  // namespace conclave::kernels::cpu
