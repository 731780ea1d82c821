#include "kernels/cpu/vec_dot.h"

#include <cstdint>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"

namespace conclave::kernels::cpu {

// Defined in vec_dot_avx2.cc (compiled with -mavx2 -mfma -mf16c); nullptr for
// types without an AVX2 kernel. Call only after the CPU check below.
VecDotFn GetVecDotAvx2(GgmlType wtype);

namespace {

// The scalar kernels follow ggml-cpu/quants.c's *_generic functions: exact
// int32 dots per block, combined in float in the same order.

float DotQ4_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  float sum = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += ((w[ib].qs[j] & 0x0F) - 8) * x[ib].qs[j];
      sumi1 += ((w[ib].qs[j] >> 4) - 8) * x[ib].qs[j + kQK / 2];
    }
    sum += static_cast<float>(sumi0 + sumi1) * Fp16ToFp32(w[ib].d) *
           Fp16ToFp32(x[ib].d);
  }
  return sum;
}

float DotQ4_1Q8_1(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_1*>(vw);
  const auto* x = static_cast<const BlockQ8_1*>(vx);
  float sum = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += (w[ib].qs[j] & 0x0F) * x[ib].qs[j];
      sumi1 += (w[ib].qs[j] >> 4) * x[ib].qs[j + kQK / 2];
    }
    // sum(w*x) = d_w*d_x*sum(q_w*q_x) + m_w*(d_x*sum(q_x)) = ... + m_w*s_x.
    sum += (Fp16ToFp32(w[ib].d) * Fp16ToFp32(x[ib].d)) *
               static_cast<float>(sumi0 + sumi1) +
           Fp16ToFp32(w[ib].m) * Fp16ToFp32(x[ib].s);
  }
  return sum;
}

// Bit j of a Q5 block's qh (a little-endian u32) is element j's fifth bit.
uint32_t LoadQh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

float DotQ5_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ5_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  float sum = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const uint32_t qh = LoadQh(w[ib].qh);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int hi0 = ((qh >> j) << 4) & 0x10;
      const int hi1 = (qh >> (j + 12)) & 0x10;
      sumi0 += (((w[ib].qs[j] & 0x0F) | hi0) - 16) * x[ib].qs[j];
      sumi1 += (((w[ib].qs[j] >> 4) | hi1) - 16) * x[ib].qs[j + kQK / 2];
    }
    sum += (Fp16ToFp32(w[ib].d) * Fp16ToFp32(x[ib].d)) *
           static_cast<float>(sumi0 + sumi1);
  }
  return sum;
}

// As Q4_1: the min term m_w*s_x is added per block.
float DotQ5_1Q8_1(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ5_1*>(vw);
  const auto* x = static_cast<const BlockQ8_1*>(vx);
  float sum = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const uint32_t qh = LoadQh(w[ib].qh);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int hi0 = ((qh >> j) << 4) & 0x10;
      const int hi1 = (qh >> (j + 12)) & 0x10;
      sumi0 += ((w[ib].qs[j] & 0x0F) | hi0) * x[ib].qs[j];
      sumi1 += ((w[ib].qs[j] >> 4) | hi1) * x[ib].qs[j + kQK / 2];
    }
    sum += (Fp16ToFp32(w[ib].d) * Fp16ToFp32(x[ib].d)) *
               static_cast<float>(sumi0 + sumi1) +
           Fp16ToFp32(w[ib].m) * Fp16ToFp32(x[ib].s);
  }
  return sum;
}

float DotQ8_0Q8_0(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ8_0*>(vw);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  float sum = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += w[ib].qs[j] * x[ib].qs[j];
    sum += static_cast<float>(sumi) *
           (Fp16ToFp32(w[ib].d) * Fp16ToFp32(x[ib].d));
  }
  return sum;
}

// Q4_K: per super-block, integer dots of 8 sub-blocks of 32 scaled by their
// 6-bit scales, accumulated into 8 int32 lanes (element l of each 8-run goes
// to lane l), then lanes scaled by d_w*d_x into 8 float sums; the mins term
// uses the Q8_K bsums: sum_j m_j * sum(q_x in sub-block j).
float DotQ4_KQ8_K(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ4_K*>(vw);
  const auto* x = static_cast<const BlockQ8_K*>(vx);
  float sums[8] = {};
  float sumf = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint8_t scales[8], mins[8];
    for (int j = 0; j < 8; ++j) {
      const uint8_t* s = w[i].scales;
      if (j < 4) {
        scales[j] = s[j] & 63;
        mins[j] = s[j + 4] & 63;
      } else {
        scales[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mins[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      }
    }
    int8_t q[kQKK];
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] = static_cast<int8_t>(w[i].qs[32 * c + l] & 0xF);
        q[64 * c + 32 + l] = static_cast<int8_t>(w[i].qs[32 * c + l] >> 4);
      }
    }
    int32_t aux32[8] = {};
    for (int e = 0; e < kQKK; ++e) {
      aux32[e % 8] += scales[e / 32] * (q[e] * x[i].qs[e]);
    }
    int summ = 0;
    for (int j = 0; j < kQKK / 16; ++j) summ += x[i].bsums[j] * mins[j / 2];
    const float d = Fp16ToFp32(w[i].d) * x[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
    const float dmin = Fp16ToFp32(w[i].dmin) * x[i].d;
    sumf -= dmin * static_cast<float>(summ);
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// Q6_K: as Q4_K with 16 signed 8-bit scales (one per 16 elements), values
// q - 32 in [-32, 31], and no mins.
float DotQ6_KQ8_K(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BlockQ6_K*>(vw);
  const auto* x = static_cast<const BlockQ8_K*>(vx);
  float sums[8] = {};
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int8_t q[kQKK];
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    for (int half = 0; half < 2; ++half) {
      int8_t* a = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        a[l + 0] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        a[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        a[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        a[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
      ql += 64;
      qh += 32;
    }
    int32_t aux32[8] = {};
    for (int e = 0; e < kQKK; ++e) {
      aux32[e % 8] += w[i].scales[e / 16] * (q[e] * x[i].qs[e]);
    }
    const float d = Fp16ToFp32(w[i].d) * x[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float sumf = 0.0f;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// Float types: each product rounded to f32, summed in f64 (ggml_vec_dot_*'s
// scalar loop, whose sum is a ggml_float = double).
float DotF32(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const float*>(vw);
  const auto* x = static_cast<const float*>(vx);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(w[i] * x[i]);
  return static_cast<float>(sum);
}

float DotF16(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const Half*>(vw);
  const auto* x = static_cast<const Half*>(vx);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(Fp16ToFp32(w[i]) * Fp16ToFp32(x[i]));
  }
  return static_cast<float>(sum);
}

float DotBF16(const void* vw, const void* vx, int64_t n) {
  const auto* w = static_cast<const BHalf*>(vw);
  const auto* x = static_cast<const BHalf*>(vx);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(Bf16ToFp32(w[i]) * Bf16ToFp32(x[i]));
  }
  return static_cast<float>(sum);
}

bool HasAvx2FmaF16c() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

}  // namespace

VecDotFn GetVecDotScalar(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::kQ4_0:
      return DotQ4_0Q8_0;
    case GgmlType::kQ4_1:
      return DotQ4_1Q8_1;
    case GgmlType::kQ5_0:
      return DotQ5_0Q8_0;
    case GgmlType::kQ5_1:
      return DotQ5_1Q8_1;
    case GgmlType::kQ8_0:
      return DotQ8_0Q8_0;
    case GgmlType::kQ4_K:
      return DotQ4_KQ8_K;
    case GgmlType::kQ6_K:
      return DotQ6_KQ8_K;
    case GgmlType::kF32:
      return DotF32;
    case GgmlType::kF16:
      return DotF16;
    case GgmlType::kBF16:
      return DotBF16;
    default:
      CHECK(false) << "no CPU dot product for weight type "
                   << static_cast<uint32_t>(wtype);
      __builtin_unreachable();
  }
}

VecDotFn GetVecDot(GgmlType wtype) {
  if (HasAvx2FmaF16c()) {
    if (VecDotFn fn = GetVecDotAvx2(wtype)) return fn;
  }
  return GetVecDotScalar(wtype);
}

}  // namespace conclave::kernels::cpu
