#include "kernels/cpu/matmul_q4_k.h"

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace {

// fp16 -> fp32 through _Float16 (F16C inside the AVX2 function, exact either
// way).
CONCLAVE_INLINE float HalfToFloat(Half h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

// ggml_quantize_mat_q8_K_4x8 (x86, AVX2 path) for one row, written to plain
// BlockQ8_K blocks. Same values as quantize_row_q8_K except for the sign of
// the scale: ggml scans |x| per lane and takes iscale = -127/amax when some
// element equals +amax, else +127/amax (quantize_row_q8_K follows the first
// element of largest |x| instead; the two differ only when both +amax and
// -amax occur). q = round-half-even(x * iscale), saturated like the packs;
// d = 1/iscale; bsums are exact sums of 16.
void QuantizeQ8KForGemm(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float amax = 0.0f;
    for (int j = 0; j < kQKK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    bool positive_max = false;
    for (int j = 0; j < kQKK; ++j) positive_max |= x[j] == amax;
    float iscale = 0.0f;
    if (amax != 0.0f) iscale = positive_max ? -127.0f / amax : 127.0f / amax;
    for (int j = 0; j < kQKK; ++j) {
      const float r = std::nearbyint(x[j] * iscale);
      y[i].qs[j] = static_cast<int8_t>(r > 127.0f ? 127.0f : (r >= -128.0f ? r : -128.0f));
    }
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += y[i].qs[g * 16 + j];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = amax != 0.0f ? 1.0f / iscale : 0.0f;
  }
}

// One Q4_K super-block with its quants as bytes in element order and the
// 6-bit scales and mins unpacked.
struct UnpackedQ4K {
  uint8_t q[kQKK];
  int32_t scale[8];
  int32_t min[8];
  float d;
  float dmin;
};

CONCLAVE_INLINE void Unpack(const BlockQ4_K& b, UnpackedQ4K& u) {
  const uint8_t* s = b.scales;
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      u.scale[j] = s[j] & 63;
      u.min[j] = s[j + 4] & 63;
    } else {
      u.scale[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      u.min[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  }
  // Sub-block 2k is the low nibbles of qs[32k, 32k + 32), 2k + 1 the high.
  for (int k = 0; k < 4; ++k) {
    for (int e = 0; e < 32; ++e) {
      u.q[64 * k + e] = b.qs[32 * k + e] & 0xF;
      u.q[64 * k + 32 + e] = b.qs[32 * k + e] >> 4;
    }
  }
  u.d = HalfToFloat(b.d);
  u.dmin = HalfToFloat(b.dmin);
}

// dot(W row, activation row) over `nb` super-blocks. kGemm: one fused
// multiply-add per pair of sub-blocks (ggml_gemm_q4_K_8x8_q8_K); else one per
// super-block (ggml_gemv_q4_K_8x8_q8_K). Both scale the exact int32 sums by
// the f32 product d_w * d_x, keep the mins apart and subtract at the end.
template <bool kGemm>
CONCLAVE_INLINE float DotRow(const UnpackedQ4K* w, const BlockQ8_K* a, int64_t nb) {
  float acc = 0.0f, acc_min = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const UnpackedQ4K& u = w[i];
    int32_t dot[8];
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int e = 0; e < 32; ++e) {
        s += static_cast<int32_t>(u.q[32 * j + e]) * static_cast<int32_t>(a[i].qs[32 * j + e]);
      }
      dot[j] = s;
    }
    const int16_t* bs = a[i].bsums;
    const float d = u.d * a[i].d;
    const float dmin = u.dmin * a[i].d;
    int32_t sum_b = 0, min_b = 0;
    for (int p = 0; p < 4; ++p) {
      const int32_t sum_p = u.scale[2 * p] * dot[2 * p] + u.scale[2 * p + 1] * dot[2 * p + 1];
      const int32_t min_p = u.min[2 * p] * (bs[4 * p] + bs[4 * p + 1]) +
                            u.min[2 * p + 1] * (bs[4 * p + 2] + bs[4 * p + 3]);
      if constexpr (kGemm) {
        acc = __builtin_fmaf(static_cast<float>(sum_p), d, acc);
        acc_min = __builtin_fmaf(static_cast<float>(min_p), dmin, acc_min);
      } else {
        sum_b += sum_p;
        min_b += min_p;
      }
    }
    if constexpr (!kGemm) {
      acc = __builtin_fmaf(static_cast<float>(sum_b), d, acc);
      acc_min = __builtin_fmaf(static_cast<float>(min_b), dmin, acc_min);
    }
  }
  return acc - acc_min;
}

// Weight rows [begin, end) against all activation rows; rows t < n_gemm use
// the gemm order, the rest the gemv order.
CONCLAVE_INLINE void RowsBody(const BlockQ4_K* w, const BlockQ8_K* act, float* y, int64_t rows,
                              int64_t nb, int n_tokens, int n_gemm, int64_t begin,
                              int64_t end) {
  std::vector<UnpackedQ4K> row(nb);
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t i = 0; i < nb; ++i) Unpack(w[r * nb + i], row[i]);
    for (int t = 0; t < n_tokens; ++t) {
      const BlockQ8_K* a = act + t * nb;
      y[t * rows + r] = t < n_gemm ? DotRow<true>(row.data(), a, nb)
                                   : DotRow<false>(row.data(), a, nb);
    }
  }
}

__attribute__((target("avx2,fma,f16c"))) void RowsFast(const BlockQ4_K* w,
                                                        const BlockQ8_K* act, float* y,
                                                        int64_t rows, int64_t nb,
                                                        int n_tokens, int n_gemm,
                                                        int64_t begin, int64_t end) {
  RowsBody(w, act, y, rows, nb, n_tokens, n_gemm, begin, end);
}

void RowsPortable(const BlockQ4_K* w, const BlockQ8_K* act, float* y, int64_t rows,
                  int64_t nb, int n_tokens, int n_gemm, int64_t begin, int64_t end) {
  RowsBody(w, act, y, rows, nb, n_tokens, n_gemm, begin, end);
}

// ggml's repack forward_mul_mat hands out output columns in chunks aligned
// to 8; any split gives the same numbers, this one keeps chunks whole.
constexpr int64_t kRowGrain = 16;

}  // namespace

bool RepackedQ4KOrderEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("CONCLAVE_Q4K_ORDER");
    return v != nullptr && std::strcmp(v, "repacked") == 0;
  }();
  return enabled;
}

bool UsesRepackedQ4K(const WeightTensor& w) {
  return RepackedQ4KOrderEnabled() && RepackableQ4K(w);
}

bool RepackableQ4K(const WeightTensor& w) {
  return w.type == GgmlType::kQ4_K && w.rows() % 8 == 0 &&
         DetectSimdLevel() != SimdLevel::kScalar && CpuHasAvx2FmaF16c();
}

void MatMulQ4KRepacked(const WeightTensor& w, const float* x, float* y, int n_tokens,
                       MatMulScratch& scratch, ThreadPool& pool) {
  CHECK(w.type == GgmlType::kQ4_K) << w.name << " is " << TypeName(w.type);
  const int64_t cols = w.cols(), rows = w.rows();
  CHECK_EQ(cols % kQKK, 0) << w.name;
  const int64_t nb = cols / kQKK;
  const size_t act_row_bytes = RowBytes(GgmlType::kQ8_K, cols);
  if (scratch.quantized.size() < act_row_bytes * n_tokens) {
    scratch.quantized.resize(act_row_bytes * n_tokens);
  }
  // [n_tokens, nb] Q8_K blocks.
  auto* act = reinterpret_cast<BlockQ8_K*>(scratch.quantized.data());
  static_assert(sizeof(BlockQ8_K) % alignof(BlockQ8_K) == 0);
  // ggml: gemm for the first n - n % 4 rows when n > 3, gemv for the rest.
  const int n_gemm = n_tokens > 3 ? n_tokens - n_tokens % 4 : 0;
  pool.ParallelFor(n_tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      if (t < n_gemm) {
        QuantizeQ8KForGemm(x + t * cols, act + t * nb, nb);
      } else {
        QuantizeRow(GgmlType::kQ8_K, x + t * cols, act + t * nb, cols);
      }
    }
  });
  const auto* wblocks = static_cast<const BlockQ4_K*>(w.data);
  const bool fast = CpuHasAvx2FmaF16c();
  pool.ParallelFor(rows, kRowGrain, [&](int64_t begin, int64_t end) {
    if (fast) {
      RowsFast(wblocks, act, y, rows, nb, n_tokens, n_gemm, begin, end);
    } else {
      RowsPortable(wblocks, act, y, rows, nb, n_tokens, n_gemm, begin, end);
    }
  });
}

}  // namespace conclave::kernels::cpu
