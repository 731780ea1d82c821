#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {

void Rope(float* x, int n_heads, int head_dim, int n_rot, int64_t pos,
          float freq_base, bool neox) {
  const float theta_scale = powf(freq_base, -2.0f / n_rot);
  // cos/sin per pair; ggml builds theta by repeated multiplication.
  float cos_k[512], sin_k[512];
  float theta = static_cast<float>(pos);
  for (int k = 0; k < n_rot / 2; ++k) {
    cos_k[k] = cosf(theta);
    sin_k[k] = sinf(theta);
    theta *= theta_scale;
  }
  static const bool fused = DetectSimdLevel() != SimdLevel::kScalar;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int k = 0; k < n_rot / 2; ++k) {
      const int i0 = neox ? k : 2 * k;
      const int i1 = neox ? k + n_rot / 2 : 2 * k + 1;
      const float a = v[i0], b = v[i1];
      if (fused) {
        // ggml's rotate_pairs as GCC contracts it when built with FMA.
        v[i0] = std::fma(a, cos_k[k], -(b * sin_k[k]));
        v[i1] = std::fma(a, sin_k[k], b * cos_k[k]);
      } else {
        v[i0] = a * cos_k[k] - b * sin_k[k];
        v[i1] = a * sin_k[k] + b * cos_k[k];
      }
    }
  }
}

}  // namespace conclave::kernels::cpu
