// When an open-loop load generator sends its requests: a Poisson process of
// `rate` requests per second, i.e. independent exponential gaps of mean
// 1 / rate, drawn from a generator seeded by the caller so that a run can be
// repeated exactly. Open loop means the schedule never waits for the server:
// a slow server sees the same arrivals as a fast one (unlike a closed loop,
// whose clients wait for each answer and so slow down with it).
// Not thread-safe: one dispatcher owns it.
#ifndef CONCLAVE_LOADTEST_LOAD_ARRIVAL_H_
#define CONCLAVE_LOADTEST_LOAD_ARRIVAL_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace conclave::loadtest {

class PoissonArrivals {
 public:
  // `rate` > 0 requests per second (checked by the caller's flag parsing).
  PoissonArrivals(double rate, uint64_t seed);

  // The gap before the next arrival: -ln(1 - u) / rate for u uniform in
  // [0, 1) with 53 random bits, the same on every platform (unlike
  // std::exponential_distribution, whose algorithm is the library's).
  absl::Duration NextGap();

  // The next arrival's offset from the start of the run: the sum of the
  // gaps so far, so that a dispatcher that falls behind catches up instead
  // of drifting.
  absl::Duration NextArrival();

  double rate() const { return rate_; }

 private:
  const double rate_;
  std::mt19937_64 rng_;
  absl::Duration elapsed_ = absl::ZeroDuration();
};

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_ARRIVAL_H_
