#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "kernels/check.h"
#include "kernels/cpu/matmul_q4_k.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/vec_dot.h"
#include "kernels/cpu/vec_dot_packed.h"
#include "kernels/cpu/vec_dot_rows.h"

namespace conclave::kernels::cpu {
namespace {

// Rows per scheduling unit: keeps each thread's share a whole number of
// cache-friendly chunks.
constexpr int64_t kRowGrain = 16;

}  // namespace

void MatMul(const WeightTensor& w, const float* x, float* y, int n_tokens,
            MatMulScratch& scratch, ThreadPool& pool) {
  const MatMulOutput out[1] = {{&w, y}};
  MatMulShared(out, x, n_tokens, scratch, pool);
}

void MatMulShared(absl::Span<const MatMulOutput> outputs, const float* x, int n_tokens,
                  MatMulScratch& scratch, ThreadPool& pool) {
  if (outputs.empty()) return;
  const WeightTensor& first = *outputs[0].w;
  const int64_t cols = first.cols();
  bool same_kind = true;  // one activation conversion and one kernel for all
  for (const MatMulOutput& o : outputs) {
    CHECK_EQ(o.w->cols(), cols) << o.w->name << " does not read the same input as " << first.name;
    same_kind = same_kind && o.w->type == first.type && !UsesRepackedQ4K(*o.w);
  }
  if (!same_kind) {
    for (const MatMulOutput& o : outputs) {
      // llama.cpp repacks these at load and multiplies them in another order.
      if (UsesRepackedQ4K(*o.w)) {
        MatMulQ4KRepacked(*o.w, x, o.y, n_tokens, scratch, pool);
      } else {
        const MatMulOutput one[1] = {o};
        MatMulShared(one, x, n_tokens, scratch, pool);
      }
    }
    return;
  }
  const GgmlType act_type = ActivationTypeFor(first.type);
  const size_t act_row_bytes = RowBytes(act_type, cols);
  const size_t w_row_bytes = RowBytes(first.type, cols);
  if (scratch.quantized.size() < act_row_bytes * n_tokens) {
    scratch.quantized.resize(act_row_bytes * n_tokens);
  }
  uint8_t* act = scratch.quantized.data();
  // The rows of every output, numbered one after another, so that all of
  // them are split over the threads in one parallel region.
  int64_t total_rows = 0;
  for (const MatMulOutput& o : outputs) total_rows += o.w->rows();
  // Finds the output that row `r` (of all outputs) belongs to.
  auto locate = [&](int64_t r, int64_t& local) -> const MatMulOutput& {
    size_t i = 0;
    while (r >= outputs[i].w->rows()) r -= outputs[i++].w->rows();
    local = r;
    return outputs[i];
  };

  const PackedRowsKernel* packed = n_tokens > 1 ? GetPackedRowsKernel(first.type) : nullptr;
  if (packed != nullptr) {
    // Activations quantized and laid out once for the kernel, then each
    // weight row is unpacked once for all tokens (same results).
    constexpr int kGroup = PackedRowsKernel::kGroupRows;
    const int64_t groups = (n_tokens + kGroup - 1) / kGroup;
    const size_t group_bytes = packed->group_bytes(cols);
    if (scratch.packed.size() < group_bytes * groups) scratch.packed.resize(group_bytes * groups);
    uint8_t* pk = scratch.packed.data();
    pool.ParallelFor(groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        const int n = static_cast<int>(std::min<int64_t>(kGroup, n_tokens - g * kGroup));
        for (int t = 0; t < n; ++t) {
          QuantizeRow(act_type, x + (g * kGroup + t) * cols,
                      act + (g * kGroup + t) * act_row_bytes, cols);
        }
        packed->pack_group(act + g * kGroup * act_row_bytes, act_row_bytes, n, cols,
                           pk + g * group_bytes);
      }
    });
    pool.ParallelFor(total_rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        int64_t local = 0;
        const MatMulOutput& o = locate(r, local);
        const uint8_t* wrow = static_cast<const uint8_t*>(o.w->data) + local * w_row_bytes;
        packed->dot(wrow, pk, n_tokens, cols, o.y + local, o.w->rows());
      }
    });
    return;
  }

  // [n_tokens, act_row_bytes]
  pool.ParallelFor(n_tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      QuantizeRow(act_type, x + t * cols, act + t * act_row_bytes, cols);
    }
  });
  const VecDotRowsFn rows_dot = n_tokens > 1 ? GetVecDotRows(first.type) : nullptr;
  const VecDotFn dot = GetVecDot(first.type);
  pool.ParallelFor(total_rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t local = 0;
      const MatMulOutput& o = locate(r, local);
      const uint8_t* wrow = static_cast<const uint8_t*>(o.w->data) + local * w_row_bytes;
      const int64_t rows = o.w->rows();
      if (rows_dot != nullptr) {
        // Each weight row is unpacked once for all tokens (same results).
        rows_dot(wrow, act, act_row_bytes, n_tokens, cols, o.y + local, rows);
      } else {
        for (int t = 0; t < n_tokens; ++t) {
          o.y[t * rows + local] = dot(wrow, act + t * act_row_bytes, cols);
        }
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
