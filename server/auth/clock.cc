#include "server/auth/clock.h"

#include "kernels/check.h"

namespace conclave::server::auth {
namespace {

class SteadyClockImpl final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

const Clock& SteadyClock() {
  static const SteadyClockImpl clock;
  return clock;
}

Clock::TimePoint ManualClock::Now() const {
  return TimePoint(std::chrono::nanoseconds(nanos_.load(std::memory_order_acquire)));
}

void ManualClock::Advance(std::chrono::nanoseconds by) {
  CHECK_GE(by.count(), 0) << "ManualClock cannot run backwards";
  nanos_.fetch_add(by.count(), std::memory_order_acq_rel);
}

}  // namespace conclave::server::auth
