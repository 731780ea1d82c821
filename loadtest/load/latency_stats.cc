#include "loadtest/load/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/check.h"

namespace conclave::loadtest {

double Percentile(absl::Span<const double> sorted, double p) {
  CHECK(!sorted.empty()) << "percentile of no samples";
  CHECK(p >= 0 && p <= 100) << "percentile " << p;
  const double n = static_cast<double>(sorted.size());
  // The small epsilon keeps p * n / 100 that is an integer in exact
  // arithmetic (95 * 20 / 100 = 19) from rounding up to the next rank.
  const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p / 100 * n - 1e-9)));
  return sorted[static_cast<size_t>(std::min<int64_t>(rank, sorted.size())) - 1];
}

LatencySummary Summarize(std::vector<double> samples) {
  LatencySummary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = static_cast<int64_t>(samples.size());
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(s.count);
  s.p50 = Percentile(samples, 50);
  s.p95 = Percentile(samples, 95);
  s.p99 = Percentile(samples, 99);
  s.max = samples.back();
  return s;
}

}  // namespace conclave::loadtest
