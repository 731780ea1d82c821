// The CUDA RMSNorm against the CPU reference (kernels/cpu/rms_norm).
#include "kernels/cuda/rms_norm.h"

#include <cuda_runtime.h>

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/rms_norm.h"

namespace conclave::kernels::cuda {
namespace {

TEST(RmsNormCudaTest, MatchesTheCpuKernelOnAwkwardShapes) {
  if (!DeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (int64_t n : {1, 31, 576, 640, 1537}) {
    const int64_t rows = 5;
    std::vector<float> x(rows * n), w(n), want(rows * n), got(rows * n);
    for (float& v : x) v = dist(rng);
    for (float& v : w) v = dist(rng);
    cpu::RmsNorm(x.data(), w.data(), want.data(), rows, n, 1e-5f);
    float *dx, *dw, *dy;
    ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dy, got.size() * 4), cudaSuccess);
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
    ASSERT_TRUE(RmsNorm(dx, dw, dy, rows, n, 1e-5f).ok());
    cudaMemcpy(got.data(), dy, got.size() * 4, cudaMemcpyDeviceToHost);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dy);
    for (int64_t i = 0; i < rows * n; ++i) {
      // Same double sum, different order: a few float ulps at most.
      EXPECT_NEAR(got[i], want[i], 1e-5f * std::max(1.0f, std::abs(want[i]))) << "n=" << n;
    }
  }
}

}  // namespace
}  // namespace conclave::kernels::cuda
