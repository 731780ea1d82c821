// RMSNorm on the GPU: the CUDA twin of kernels/cpu/rms_norm.h, same contract
// (sum of squares accumulated in double, scale = 1/sqrtf(mean + eps)).
// Host-callable; pointers are device memory.
#ifndef CONCLAVE_KERNELS_CUDA_RMS_NORM_H_
#define CONCLAVE_KERNELS_CUDA_RMS_NORM_H_

#include <cstdint>

#include "absl/status/status.h"

namespace conclave::kernels::cuda {

// y[r, :] = rmsnorm(x[r, :]) * weight. x, y: [n_rows, n]; weight: [n] or
// nullptr. Launches on the default stream and waits for it; returns the
// CUDA error as INTERNAL.
absl::Status RmsNorm(const float* x, const float* weight, float* y,
                     int64_t n_rows, int64_t n, float eps);

// True when a CUDA device is usable (tests skip otherwise).
bool DeviceAvailable();

}  // namespace conclave::kernels::cuda

#endif  // CONCLAVE_KERNELS_CUDA_RMS_NORM_H_
