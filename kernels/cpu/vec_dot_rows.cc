#include "kernels/cpu/vec_dot_rows.h"

#include "kernels/cpu/simd_order.h"
#include "kernels/cpu/vec_dot.h"

namespace conclave::kernels::cpu {

VecDotRowsFn GetVecDotRowsAvx2(GgmlType wtype);    // vec_dot_rows_avx2.cc

namespace {

}  // namespace

VecDotRowsFn GetVecDotRows(GgmlType wtype) {
  // The multi-row kernels follow the AVX2 single-row kernels' order, so they
  // are used exactly when GetVecDot would pick those. (On AVX-512 CPUs
  // MatMul prefers the packed kernels of vec_dot_packed.h.)
  static const bool avx2 = CpuHasAvx2FmaF16c();
  if (!avx2) return nullptr;
  return GetVecDotRowsAvx2(wtype);
}

void VecDotRowsReference(GgmlType wtype, const void* w, const uint8_t* x, size_t x_row_bytes,
                         int n_rows, int64_t n, float* y, int64_t y_stride) {
  const VecDotFn dot = GetVecDot(wtype);
  for (int t = 0; t < n_rows; ++t) y[t * y_stride] = dot(w, x + t * x_row_bytes, n);
}

}  // namespace conclave::kernels::cpu
