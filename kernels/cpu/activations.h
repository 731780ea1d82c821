// Gated feed-forward activations: out = act(gate) * up, element-wise.
#ifndef CONCLAVE_KERNELS_CPU_ACTIVATIONS_H_
#define CONCLAVE_KERNELS_CPU_ACTIVATIONS_H_

#include <cstdint>

namespace conclave::kernels::cpu {

// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)) with exp as
// ggml computes it on this CPU (see simd_order.h). [n]
void SwiGlu(const float* gate, const float* up, float* out, int64_t n);

// out[i] = gelu_tanh(gate[i]) * up[i], through ggml's fp16 GELU table:
// x rounded to fp16, gelu evaluated, the result rounded to fp16; x <= -10
// gives 0 and x >= 10 gives x. [n]
void GeGlu(const float* gate, const float* up, float* out, int64_t n);

// The exact tanh-approximation GELU in float (reference for GeGlu).
float GeluTanh(float x);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_ACTIVATIONS_H_
