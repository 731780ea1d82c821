#include "kernels/cpu/activations.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {
namespace {

// gelu(fp16 x) rounded to fp16, for every fp16 bit pattern (as ggml's
// ggml_table_gelu_f16).
const std::vector<Half>& GeluTable() {
  static const std::vector<Half>* table = [] {
    auto* t = new std::vector<Half>(1 << 16);
    for (int i = 0; i < (1 << 16); ++i) {
      (*t)[i] = Fp32ToFp16(GeluTanh(Fp16ToFp32(static_cast<Half>(i))));
    }
    return t;
  }();
  return *table;
}

}  // namespace

float GeluTanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  // 1 + c*x*x fused as GCC fuses it in ggml's build (one table entry, fp16
  // 0xBFFF, differs otherwise).
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * x * __builtin_fmaf(kCoef * x, x, 1.0f)));
}

namespace {

// ggml_vec_swiglu_f32: whole SIMD groups use ggml_v_silu (its own expf),
// the tail uses libm expf.
CONCLAVE_INLINE void SwiGluBody(SimdLevel level, const float* gate, const float* up, float* out,
                                int64_t n) {
  const int64_t lanes = LanesOf(level);
  const int64_t simd_end = lanes > 1 ? n / lanes * lanes : 0;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = i < simd_end ? GgmlExpf(level, 0.0f - g) : expf(-g);
    out[i] = g / (1.0f + e) * up[i];
  }
}

__attribute__((target("avx2,fma"))) void SwiGluFast(SimdLevel level, const float* gate,
                                                     const float* up, float* out, int64_t n) {
  SwiGluBody(level, gate, up, out, n);
}

}  // namespace

void SwiGlu(const float* gate, const float* up, float* out, int64_t n) {
  static const SimdLevel level = DetectSimdLevel();
  if (level != SimdLevel::kScalar && CpuHasAvx2FmaF16c()) {
    SwiGluFast(level, gate, up, out, n);
  } else {
    SwiGluBody(level, gate, up, out, n);
  }
}

void GeGlu(const float* gate, const float* up, float* out, int64_t n) {
  const std::vector<Half>& table = GeluTable();
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    float act;
    if (g <= -10.0f) {
      act = 0.0f;
    } else if (g >= 10.0f) {
      act = g;
    } else {
      act = Fp16ToFp32(table[Fp32ToFp16(g)]);
    }
    out[i] = act * up[i];
  }
}

}  // namespace conclave::kernels::cpu
