#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "kernels/check.h"
#include "kernels/cpu/matmul_q4_k.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/vec_dot.h"
#include "kernels/cpu/vec_dot_rows.h"

namespace conclave::kernels::cpu {
namespace {

// Rows per scheduling unit: keeps each thread's share a whole number of
// cache-friendly chunks.
constexpr int64_t kRowGrain = 16;

}  // namespace

void MatMul(const WeightTensor& w, const float* x, float* y, int n_tokens,
            MatMulScratch& scratch, ThreadPool& pool) {
  // llama.cpp repacks these at load and multiplies them in another order.
  if (UsesRepackedQ4K(w)) {
    MatMulQ4KRepacked(w, x, y, n_tokens, scratch, pool);
    return;
  }
  const int64_t cols = w.cols(), rows = w.rows();
  const GgmlType act_type = ActivationTypeFor(w.type);
  const size_t act_row_bytes = RowBytes(act_type, cols);
  const size_t w_row_bytes = RowBytes(w.type, cols);
  if (scratch.quantized.size() < act_row_bytes * n_tokens) {
    scratch.quantized.resize(act_row_bytes * n_tokens);
  }
  uint8_t* act = scratch.quantized.data();
  // [n_tokens, act_row_bytes]
  pool.ParallelFor(n_tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      QuantizeRow(act_type, x + t * cols, act + t * act_row_bytes, cols);
    }
  });
  const uint8_t* wbytes = static_cast<const uint8_t*>(w.data);
  if (const VecDotRowsFn rows_dot = GetVecDotRows(w.type); rows_dot && n_tokens > 1) {
    // Each weight row is unpacked once for all tokens (same results).
    pool.ParallelFor(rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        rows_dot(wbytes + r * w_row_bytes, act, act_row_bytes, n_tokens, cols, y + r, rows);
      }
    });
    return;
  }
  const VecDotFn dot = GetVecDot(w.type);
  pool.ParallelFor(rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* wrow = wbytes + r * w_row_bytes;
      for (int t = 0; t < n_tokens; ++t) {
        y[t * rows + r] = dot(wrow, act + t * act_row_bytes, cols);
      }
    }
  });
}

void MatMulReference(const WeightTensor& w, const float* x, float* y,
                     int n_tokens) {
  const int64_t cols = w.cols(), rows = w.rows();
  const size_t w_row_bytes = RowBytes(w.type, cols);
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(w.type, static_cast<const uint8_t*>(w.data) + r * w_row_bytes,
                  row.data(), cols);
    for (int t = 0; t < n_tokens; ++t) {
      double sum = 0.0;
      for (int64_t c = 0; c < cols; ++c) sum += double{row[c]} * x[t * cols + c];
      y[t * rows + r] = static_cast<float>(sum);
    }
  }
}

void GetRow(const WeightTensor& w, int64_t row, float* out) {
  CHECK(row >= 0 && row < w.rows()) << "row " << row << " of " << w.name
                                    << " with " << w.rows() << " rows";
  const size_t w_row_bytes = RowBytes(w.type, w.cols());
  DequantizeRow(w.type, static_cast<const uint8_t*>(w.data) + row * w_row_bytes,
                out, w.cols());
}

}  // namespace conclave::kernels::cpu
