// The time source of the rate limiters and of the key store's reload checks:
// the steady clock in the server, a hand-driven clock in tests (so refills,
// Retry-After values and reload intervals are exact, with no sleeps).
// Thread-safe.
#ifndef CONCLAVE_SERVER_AUTH_CLOCK_H_
#define CONCLAVE_SERVER_AUTH_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace conclave::server::auth {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// std::chrono::steady_clock: never jumps when the wall clock is set.
const Clock& SteadyClock();

// Starts at the steady clock's epoch and moves only by Advance.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override;
  // `by` >= 0: a clock that ran backwards would be a bug of the test.
  void Advance(std::chrono::nanoseconds by);

 private:
  std::atomic<int64_t> nanos_{0};  // since the epoch
};

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_CLOCK_H_
