// One weight row against many activation rows: the inner loop of a matrix
// product with several tokens (prefill chunks, and decode steps of many
// sequences). Each weight block is loaded and unpacked once for all the
// activation rows, and every result is bit-identical to VecDot of that pair
// (same integer lanes, same float order), so batching never changes a
// sequence's numbers.
#ifndef CONCLAVE_KERNELS_CPU_VEC_DOT_ROWS_H_
#define CONCLAVE_KERNELS_CPU_VEC_DOT_ROWS_H_

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// y[t * y_stride] = VecDot(wtype, w, x + t * x_row_bytes, n) for t < n_rows.
// w: one weight row of n elements; x: n_rows activation rows converted by
// QuantizeRow(ActivationTypeFor(wtype)), x_row_bytes apart.
using VecDotRowsFn = void (*)(const void* w, const uint8_t* x, size_t x_row_bytes,
                              int n_rows, int64_t n, float* y, int64_t y_stride);

// The multi-row kernel for `wtype` on this CPU, or nullptr when there is
// none (callers then loop over GetVecDot). Reference: VecDotRowsReference.
VecDotRowsFn GetVecDotRows(GgmlType wtype);

// Plain loop over GetVecDot(wtype): what every VecDotRowsFn must equal.
void VecDotRowsReference(GgmlType wtype, const void* w, const uint8_t* x, size_t x_row_bytes,
                         int n_rows, int64_t n, float* y, int64_t y_stride);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_VEC_DOT_ROWS_H_
