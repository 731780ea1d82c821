#include "kernels/cpu/simd_order.h"

#include <cstdlib>
#include <cstring>

namespace conclave::kernels::cpu {

bool CpuHasAvx2FmaF16c() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

SimdLevel DetectSimdLevel() {
  static const SimdLevel level = [] {
    if (const char* forced = std::getenv("CONCLAVE_SIMD_LEVEL")) {
      if (std::strcmp(forced, "scalar") == 0) return SimdLevel::kScalar;
      if (std::strcmp(forced, "avx2") == 0) return SimdLevel::kAvx2;
      if (std::strcmp(forced, "avx512") == 0) return SimdLevel::kAvx512;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
      return SimdLevel::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::kAvx2;
#endif
    return SimdLevel::kScalar;
  }();
  return level;
}

}  // namespace conclave::kernels::cpu
