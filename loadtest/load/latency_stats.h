// Summaries of latency samples for the load generator's report: count,
// mean, p50, p95, p99 and max.
//
// Percentiles are nearest-rank (the value at rank ceil(p / 100 * n) of the
// sorted samples, rank 1 for p = 0): always one of the measured values,
// never an interpolation between two, which is what a latency objective
// ("99% of requests within X") asks about. With fewer than 100 samples p99
// is the maximum.
// Thread-safe: pure functions.
#ifndef CONCLAVE_LOADTEST_LOAD_LATENCY_STATS_H_
#define CONCLAVE_LOADTEST_LOAD_LATENCY_STATS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace conclave::loadtest {

// The nearest-rank `p`th percentile (p in [0, 100]) of `sorted` (ascending,
// non-empty).
double Percentile(absl::Span<const double> sorted, double p);

struct LatencySummary {
  int64_t count = 0;
  // Zero when count is 0.
  double mean = 0, p50 = 0, p95 = 0, p99 = 0, max = 0;
};

// Sorts a copy of `samples` and summarizes it.
LatencySummary Summarize(std::vector<double> samples);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_LATENCY_STATS_H_
