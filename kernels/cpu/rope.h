// Rotary position embedding, computed as ggml's rope (ext_factor 0,
// freq_scale 1): theta for pair k at position p is p * base^(-2k/n_rot),
// built by repeated float multiplication, and the rotation fused the way
// ggml's build for this CPU fuses it, so that it matches ggml bit for bit.
#ifndef CONCLAVE_KERNELS_CPU_ROPE_H_
#define CONCLAVE_KERNELS_CPU_ROPE_H_

#include <cstdint>

namespace conclave::kernels::cpu {

// Rotates, in place, the first n_rot dims of each of n_heads heads of x.
// x: [n_heads, head_dim]. neox=false rotates pairs (2k, 2k+1) (Llama in
// GGUF); neox=true rotates (k, k + n_rot/2) (Gemma).
void Rope(float* x, int n_heads, int head_dim, int n_rot, int64_t pos,
          float freq_base, bool neox);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_ROPE_H_
