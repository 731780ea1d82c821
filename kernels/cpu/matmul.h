// Matrix products of weights in their stored (quantized) format with float
// activations, the way ggml's CPU mul_mat does them: each activation row is
// converted once to the weight type's activation type (Q8_0, Q8_1, Q8_K,
// F16, ...), then every (weight row, activation row) pair is one VecDot.
#ifndef CONCLAVE_KERNELS_CPU_MATMUL_H_
#define CONCLAVE_KERNELS_CPU_MATMUL_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/model_spec.h"

namespace conclave::kernels::cpu {

// Reusable scratch for the converted activations (grows, never shrinks).
struct MatMulScratch {
  std::vector<uint8_t> quantized;
  std::vector<uint8_t> packed;  // the quantized rows in a packed kernel's layout
};

// y[t, r] = dot(W[r, :], x[t, :]) for t < n_tokens, r < w.rows().
// x: [n_tokens, w.cols()] floats; y: [n_tokens, w.rows()] floats.
// Rows are split across the pool; each thread walks its rows once and dots
// each with all n_tokens activation rows, so a weight row is read once per
// call whatever the batch size.
void MatMul(const WeightTensor& w, const float* x, float* y, int n_tokens,
            MatMulScratch& scratch, ThreadPool& pool);

struct MatMulOutput {
  const WeightTensor* w;
  float* y;  // [n_tokens, w->rows()]
};

// MatMul for several weights that read the same x (Q, K and V; gate and
// up): x is converted once, and the rows of all of them are split over the
// threads in one parallel region. Every w->cols() must be equal. Results
// are those of one MatMul per output.
void MatMulShared(absl::Span<const MatMulOutput> outputs, const float* x, int n_tokens,
                  MatMulScratch& scratch, ThreadPool& pool);

// Reference: dequantizes W row by row and sums in double. For tests.
void MatMulReference(const WeightTensor& w, const float* x, float* y,
                     int n_tokens);

// out[0..cols) = row `row` of W, dequantized (embedding look-up).
void GetRow(const WeightTensor& w, int64_t row, float* out);

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_MATMUL_H_
