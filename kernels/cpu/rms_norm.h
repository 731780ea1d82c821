// RMS normalisation as ggml computes it: the sum of squares in double, the
// mean cast to float, scale = 1 / sqrtf(mean + eps), then y = (x * scale) * w.
#ifndef CONCLAVE_KERNELS_CPU_RMS_NORM_H_
#define CONCLAVE_KERNELS_CPU_RMS_NORM_H_

#include <cstdint>

namespace conclave::kernels::cpu {

// y[r, :] = rmsnorm(x[r, :]) * weight for r < n_rows.
// x, y: [n_rows, n] (may alias); weight: [n] or nullptr for none.
void RmsNorm(const float* x, const float* weight, float* y, int64_t n_rows,
             int64_t n, float eps);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_RMS_NORM_H_
