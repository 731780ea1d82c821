#include "kernels/cpu/rms_norm.h"

#include <cmath>

namespace conclave::kernels::cpu {

void RmsNorm(const float* x, const float* weight, float* y, int64_t n_rows,
             int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; ++i) {
      const float v = xr[i] * scale;
      yr[i] = weight != nullptr ? v * weight[i] : v;
    }
  }
}

}  // namespace conclave::kernels::cpu
