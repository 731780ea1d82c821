// A token bucket: holds at most `capacity` tokens and gains
// `refill_per_second` of them each second; callers take tokens for what they
// do, so the long-run rate is the refill rate and a full bucket allows a
// burst of `capacity`. Starts full.
//
// The level may go below zero (Charge): work that turned out larger than the
// estimate it was admitted with is paid for before anything else is
// admitted. It never goes below -capacity, so one bad estimate locks a caller
// out for at most capacity / refill_per_second seconds.
// Not thread-safe: QuotaManager guards its buckets with its mutex.
#ifndef CONCLAVE_SERVER_AUTH_TOKEN_BUCKET_H_
#define CONCLAVE_SERVER_AUTH_TOKEN_BUCKET_H_

#include "server/auth/clock.h"

namespace conclave::server::auth {

class TokenBucket {
 public:
  // capacity > 0, refill_per_second > 0. `clock` must outlive the bucket.
  TokenBucket(double capacity, double refill_per_second, const Clock& clock);

  // Takes `n` (>= 0) tokens when that many are there; else takes nothing.
  bool TryTake(double n);

  // Takes `n` (>= 0) tokens whether or not they are there.
  void Charge(double n);

  // Gives `n` (>= 0) tokens back, never above capacity.
  void Refund(double n);

  // The level now (negative while a Charge is being paid back).
  double Available();

  // Seconds from now until TryTake(n) would succeed if nobody else took
  // anything: 0 when it would now, +infinity when n > capacity. Rounded up
  // to whole nanoseconds, so waiting exactly that long is enough.
  double SecondsUntil(double n);

  // New limits; the level is kept, but not above the new capacity.
  void SetRate(double capacity, double refill_per_second);

  double capacity() const { return capacity_; }
  double refill_per_second() const { return refill_per_second_; }

 private:
  void Refill();

  double capacity_;
  double refill_per_second_;
  const Clock& clock_;
  double level_;
  Clock::TimePoint last_refill_;
};

}  // namespace conclave::server::auth

#endif  // CONCLAVE_SERVER_AUTH_TOKEN_BUCKET_H_
