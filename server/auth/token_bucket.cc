#include "server/auth/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/check.h"

namespace conclave::server::auth {
namespace {

// Slack for floating-point rounding: a level within this of `n` counts as
// `n`, so that waiting SecondsUntil(n) always suffices.
constexpr double kEpsilonTokens = 1e-6;

}  // namespace

TokenBucket::TokenBucket(double capacity, double refill_per_second, const Clock& clock)
    : capacity_(capacity),
      refill_per_second_(refill_per_second),
      clock_(clock),
      level_(capacity),
      last_refill_(clock.Now()) {
  CHECK_GT(capacity, 0);
  CHECK_GT(refill_per_second, 0);
}

void TokenBucket::Refill() {
  const Clock::TimePoint now = clock_.Now();
  if (now <= last_refill_) return;
  const double elapsed = std::chrono::duration<double>(now - last_refill_).count();
  level_ = std::min(capacity_, level_ + elapsed * refill_per_second_);
  last_refill_ = now;
}

bool TokenBucket::TryTake(double n) {
  CHECK_GE(n, 0);
  Refill();
  if (level_ + kEpsilonTokens < n) return false;
  level_ -= n;
  return true;
}

void TokenBucket::Charge(double n) {
  CHECK_GE(n, 0);
  Refill();
  level_ = std::max(-capacity_, level_ - n);
}

void TokenBucket::Refund(double n) {
  CHECK_GE(n, 0);
  Refill();
  level_ = std::min(capacity_, level_ + n);
}

double TokenBucket::Available() {
  Refill();
  return level_;
}

double TokenBucket::SecondsUntil(double n) {
  CHECK_GE(n, 0);
  Refill();
  if (n > capacity_ + kEpsilonTokens) return std::numeric_limits<double>::infinity();
  if (level_ + kEpsilonTokens >= n) return 0;
  const double seconds = (n - level_) / refill_per_second_;
  // Up to whole nanoseconds, ignoring rounding noise far below one (the
  // kEpsilonTokens slack covers it).
  return std::ceil(seconds * 1e9 - 1e-3) / 1e9;
}

void TokenBucket::SetRate(double capacity, double refill_per_second) {
  CHECK_GT(capacity, 0);
  CHECK_GT(refill_per_second, 0);
  Refill();
  capacity_ = capacity;
  refill_per_second_ = refill_per_second;
  level_ = std::min(level_, capacity_);
  level_ = std::max(level_, -capacity_);
}

}  // namespace conclave::server::auth
