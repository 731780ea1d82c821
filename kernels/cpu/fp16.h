// Conversions between float and the 16-bit float formats of GGUF tensors.
#ifndef CONCLAVE_KERNELS_CPU_FP16_H_
#define CONCLAVE_KERNELS_CPU_FP16_H_

#include <cstdint>

#include "kernels/ggml_types.h"

namespace conclave::kernels::cpu {

// IEEE binary16 <-> binary32, round to nearest even (as F16C's vcvtps2ph
// with rounding mode 0, which ggml uses on x86).
float Fp16ToFp32(Half h);
Half Fp32ToFp16(float f);

// bfloat16: value = bits << 16. Fp32ToBf16 rounds to nearest even (NaN kept).
float Bf16ToFp32(BHalf h);
BHalf Fp32ToBf16(float f);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_FP16_H_
