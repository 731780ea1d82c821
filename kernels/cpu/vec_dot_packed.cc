#include "kernels/cpu/vec_dot_packed.h"

#include <cstdlib>

#include "kernels/cpu/simd_order.h"

namespace conclave::kernels::cpu {

const PackedRowsKernel* GetPackedRowsKernelAvx512(GgmlType wtype);  // vec_dot_packed_avx512.cc

const PackedRowsKernel* GetPackedRowsKernel(GgmlType wtype) {
  static const bool enabled =
      CpuHasAvx2FmaF16c() && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
      std::getenv("CONCLAVE_NO_AVX512") == nullptr;
  return enabled ? GetPackedRowsKernelAvx512(wtype) : nullptr;
}

}  // namespace conclave::kernels::cpu
