// Dot products of one weight row with one activation row, each in its GGUF
// type: the inner loop of every matrix product on the CPU.
#ifndef CONCLAVE_KERNELS_CPU_VEC_DOT_H_
#define CONCLAVE_KERNELS_CPU_VEC_DOT_H_

#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// Returns sum_i w[i] * x[i] over n elements, where `w` is a row of `wtype`
// and `x` a row already converted by QuantizeRow(ActivationTypeFor(wtype)).
// n % block_elems(wtype) == 0. Integer block sums are exact; the float
// combination of blocks follows llama.cpp's order where practical.
using VecDotFn = float (*)(const void* w, const void* x, int64_t n);

// The fastest implementation for this CPU (AVX2/FMA/F16C when present,
// otherwise the scalar reference). Precondition: IsSupportedWeightType(wtype).
VecDotFn GetVecDot(GgmlType wtype);

// The plain scalar implementation (float sums of exact integer block dots),
// kept beside the fast one as its reference.
VecDotFn GetVecDotScalar(GgmlType wtype);

inline float VecDot(GgmlType wtype, const void* w, const void* x, int64_t n) {
  return GetVecDot(wtype)(w, x, n);
}

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_VEC_DOT_H_
