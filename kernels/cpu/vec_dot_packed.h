// Multi-row dot products whose activation rows are first laid out for the
// kernel's inner loop: once per matrix product, not once per weight row.
// Rows are packed in independent groups of kGroupRows (pairs of rows share
// one 512-bit register, with each block's scales already converted from
// fp16), so the loop over a weight block does only the integer dot, one
// conversion and two float operations per pair of rows. Every result is
// bit-identical to VecDot of that (weight row, activation row) pair, as
// with VecDotRowsFn.
#ifndef CONCLAVE_KERNELS_CPU_VEC_DOT_PACKED_H_
#define CONCLAVE_KERNELS_CPU_VEC_DOT_PACKED_H_

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

struct PackedRowsKernel {
  static constexpr int kGroupRows = 8;

  // Bytes one packed group of kGroupRows rows of n elements takes.
  size_t (*group_bytes)(int64_t n);
  // Packs rows [0, n_rows) (n_rows <= kGroupRows; QuantizeRow output of
  // ActivationTypeFor(wtype), x_row_bytes apart) into one group at `group`.
  void (*pack_group)(const uint8_t* x, size_t x_row_bytes, int n_rows, int64_t n,
                     uint8_t* group);
  // y[t * y_stride] = VecDot(wtype, w, row t) for t < n_rows, reading the
  // packed groups at `packed` (group g at g * group_bytes(n)). w: one weight
  // row of n elements.
  void (*dot)(const void* w, const uint8_t* packed, int n_rows, int64_t n, float* y,
              int64_t y_stride);
};

// The packed kernel for `wtype` on this CPU, or nullptr when there is none
// (use GetVecDotRows). CONCLAVE_NO_AVX512=1 disables them.
const PackedRowsKernel* GetPackedRowsKernel(GgmlType wtype);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_VEC_DOT_PACKED_H_
