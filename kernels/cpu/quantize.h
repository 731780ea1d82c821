// Row conversions between float and GGUF tensor types: dequantization of
// weights (all supported types) and quantization of activations into the
// type each weight type's dot product expects (Q8_0, Q8_1, Q8_K, F16, BF16).
// Quantizers reproduce llama.cpp's x86 results bit for bit, so that logits
// match the peer's: see each definition for the rounding it uses.
#ifndef CONCLAVE_KERNELS_CPU_QUANTIZE_H_
#define CONCLAVE_KERNELS_CPU_QUANTIZE_H_

#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// True for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K (the
// weight types this backend can read). Q8_1 / Q8_K are activation-only types.
bool IsSupportedWeightType(GgmlType type);

// dst[0..n) = src row of `type`. n % block_elems(type) == 0.
// Precondition: IsSupportedWeightType(type) or type is Q8_1 / Q8_K.
void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);

// The type activations are converted to before a dot with weights of `w`:
// Q4_0->Q8_0, Q4_1->Q8_1, Q5_0->Q8_0, Q5_1->Q8_1, Q8_0->Q8_0, Q4_K->Q8_K,
// Q6_K->Q8_K, F16->F16, BF16->BF16, F32->F32 (as ggml's CPU type_traits
// vec_dot_type).
GgmlType ActivationTypeFor(GgmlType w);

// dst = x[0..n) converted to `type` (one of the activation types above).
// n % block_elems(type) == 0. Vectorised where the CPU allows; always
// byte-identical to QuantizeRowPortable.
void QuantizeRow(GgmlType type, const float* x, void* dst, int64_t n);

// The plain-C++ conversions (the reference for QuantizeRow).
void QuantizeRowPortable(GgmlType type, const float* x, void* dst, int64_t n);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_QUANTIZE_H_
