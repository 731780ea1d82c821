#include "kernels/cpu/vec_dot_rows.h"

#include <cstdlib>

#include "kernels/cpu/simd_order.h"
#include "kernels/cpu/vec_dot.h"

namespace conclave::kernels::cpu {

VecDotRowsFn GetVecDotRowsAvx2(GgmlType wtype);    // vec_dot_rows_avx2.cc
VecDotRowsFn GetVecDotRowsAvx512(GgmlType wtype);  // vec_dot_rows_avx512.cc

namespace {

bool CpuHasAvx512Vnni() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}

}  // namespace

VecDotRowsFn GetVecDotRows(GgmlType wtype) {
  // The multi-row kernels follow the AVX2 single-row kernels' order, so they
  // are used exactly when GetVecDot would pick those. CONCLAVE_NO_AVX512=1
  // keeps to AVX2 (for comparing the two).
  static const bool avx2 = CpuHasAvx2FmaF16c();
  static const bool avx512 = avx2 && CpuHasAvx512Vnni() && std::getenv("CONCLAVE_NO_AVX512") == nullptr;
  if (!avx2) return nullptr;
  if (avx512) {
    if (VecDotRowsFn fn = GetVecDotRowsAvx512(wtype)) return fn;
  }
  return GetVecDotRowsAvx2(wtype);
}

void VecDotRowsReference(GgmlType wtype, const void* w, const uint8_t* x, size_t x_row_bytes,
                         int n_rows, int64_t n, float* y, int64_t y_stride) {
  const VecDotFn dot = GetVecDot(wtype);
  for (int t = 0; t < n_rows; ++t) y[t * y_stride] = dot(w, x + t * x_row_bytes, n);
}

}  // namespace conclave::kernels::cpu
