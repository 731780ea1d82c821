#include "loadtest/load/arrival.h"

#include <cmath>

namespace conclave::loadtest {

PoissonArrivals::PoissonArrivals(double rate, uint64_t seed) : rate_(rate), rng_(seed) {}

absl::Duration PoissonArrivals::NextGap() {
  // The top 53 bits as a double in [0, 1): every value exactly representable.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return absl::Seconds(-std::log1p(-u) / rate_);
}

absl::Duration PoissonArrivals::NextArrival() {
  elapsed_ += NextGap();
  return elapsed_;
}

}  // namespace conclave::loadtest
