// conclave-membw: this machine's memory read bandwidth, printing JSON. The
// ceiling of single-sequence decode, which reads every weight once per token
// (conclave-bench reports the bytes a decode step reads; docs/performance.md
// puts the two side by side).
//
//   conclave-membw [--mib 1024] [--runs 7] [--threads 1,2]
//
// A buffer of --mib MiB (far beyond the last-level cache) is written once,
// then each run streams through it reading 64-byte lines with AVX-512 loads
// (AVX2 where the CPU has no AVX-512), summed into 8 independent
// accumulators so that the loads, not the adds, set the pace. With t threads
// each reads its own 1/t of the buffer; a run's figure is the whole buffer's
// bytes over the time from the common start to the last thread's end. The
// median over --runs is reported (the machine is shared: single runs vary).
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/tools/dash_flags.h"

ABSL_FLAG(int, mib, 1024, "buffer size in MiB (much larger than the caches)");
ABSL_FLAG(int, runs, 7, "runs per thread count (the median is reported)");
ABSL_FLAG(std::string, threads, "1,2", "thread counts to measure");

namespace {

using Clock = std::chrono::steady_clock;

// Sum of the floats of [p, p + bytes) read 64 bytes at a time (bytes % 512
// == 0, p 64-byte aligned).
__attribute__((target("avx512f"))) float ReadAvx512(const uint8_t* p, size_t bytes) {
  __m512 acc[8];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (size_t i = 0; i < bytes; i += 512) {
    for (int k = 0; k < 8; ++k) {
      acc[k] = _mm512_add_ps(acc[k], _mm512_load_ps(reinterpret_cast<const float*>(p + i + 64 * k)));
    }
  }
  for (int k = 1; k < 8; ++k) acc[0] = _mm512_add_ps(acc[0], acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc[0]);
  float s = 0.0f;
  for (float l : lanes) s += l;
  return s;
}

__attribute__((target("avx2"))) float ReadAvx2(const uint8_t* p, size_t bytes) {
  __m256 acc[8];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  for (size_t i = 0; i < bytes; i += 256) {
    for (int k = 0; k < 8; ++k) {
      acc[k] = _mm256_add_ps(acc[k], _mm256_load_ps(reinterpret_cast<const float*>(p + i + 32 * k)));
    }
  }
  for (int k = 1; k < 8; ++k) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  float s = 0.0f;
  for (float l : lanes) s += l;
  return s;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("conclave-membw [--mib 1024] [--runs 7] [--threads 1,2]");
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  absl::ParseCommandLine(argc, argv);
  const size_t bytes = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_mib))) << 20;
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  std::vector<int> thread_counts;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_threads), ',')) {
    int t = 0;
    if (absl::SimpleAtoi(part, &t) && t > 0) thread_counts.push_back(t);
  }
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (!avx512 && !__builtin_cpu_supports("avx2")) {
    std::cerr << "conclave-membw: needs AVX2 or AVX-512\n";
    return 1;
  }
  auto* buffer = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
  if (buffer == nullptr) {
    std::cerr << "conclave-membw: cannot allocate " << (bytes >> 20) << " MiB\n";
    return 1;
  }
  // Written once (pages faulted in, values finite).
  for (size_t i = 0; i < bytes / sizeof(float); ++i) reinterpret_cast<float*>(buffer)[i] = 1.0f;

  std::atomic<double> sink{0.0};
  std::vector<std::string> medians, all;
  for (int t : thread_counts) {
    // Each thread's slice: a multiple of 512 bytes.
    const size_t slice = bytes / t / 512 * 512;
    std::vector<double> gbps;
    for (int r = 0; r < runs; ++r) {
      std::barrier start(t + 1);
      std::vector<Clock::time_point> ends(t);
      std::vector<std::thread> workers;
      for (int i = 0; i < t; ++i) {
        workers.emplace_back([&, i] {
          start.arrive_and_wait();
          const float s = avx512 ? ReadAvx512(buffer + i * slice, slice)
                                 : ReadAvx2(buffer + i * slice, slice);
          ends[i] = Clock::now();
          sink.store(sink.load() + s);
        });
      }
      const Clock::time_point begin = Clock::now();
      start.arrive_and_wait();
      for (std::thread& w : workers) w.join();
      const Clock::time_point end = *std::max_element(ends.begin(), ends.end());
      const double seconds = std::chrono::duration<double>(end - begin).count();
      gbps.push_back(static_cast<double>(slice) * t / seconds / 1e9);
    }
    medians.push_back(absl::StrFormat("\"%d\":%.2f", t, Median(gbps)));
    std::vector<std::string> v;
    for (double g : gbps) v.push_back(absl::StrFormat("%.2f", g));
    all.push_back(absl::StrFormat("\"%d\":[%s]", t, absl::StrJoin(v, ",")));
  }
  std::free(buffer);
  std::cout << absl::StrFormat("{\"buffer_mib\":%d,\"runs\":%d,\"isa\":\"%s\",", bytes >> 20, runs,
                               avx512 ? "avx512" : "avx2")
            << "\"read_gb_per_s\":{" << absl::StrJoin(medians, ",") << "},"
            << "\"all_runs_gb_per_s\":{" << absl::StrJoin(all, ",") << "}"
            << (sink.load() < 0 ? ",\"never\":0" : "") << "}\n";
  return 0;
}
