#include "kernels/cuda/rms_norm.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace conclave::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row. x, y: [n_rows, n]
__global__ void RmsNormKernel(const float* x, const float* weight, float* y,
                              int64_t n, float eps) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  __shared__ double partial[kThreads];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i];
    sum += static_cast<double>(v * v);
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float mean = static_cast<float>(partial[0] / n);
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i] * scale;
    yr[i] = weight != nullptr ? v * weight[i] : v;
  }
}

}  // namespace

absl::Status RmsNorm(const float* x, const float* weight, float* y,
                     int64_t n_rows, int64_t n, float eps) {
  if (n_rows == 0) return absl::OkStatus();
  RmsNormKernel<<<static_cast<unsigned>(n_rows), kThreads>>>(x, weight, y, n, eps);
  cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("RmsNorm kernel: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

bool DeviceAvailable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace conclave::kernels::cuda
