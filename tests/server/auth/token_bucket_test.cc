// The token bucket on a hand-driven clock: bursts, refill, debt, waits.
#include "server/auth/token_bucket.h"

#include <chrono>
#include <cmath>

#include "gtest/gtest.h"

namespace conclave::server::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(TokenBucketTest, StartsFullAndAllowsABurstOfItsCapacity) {
  ManualClock clock;
  TokenBucket bucket(5, 1, clock);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.TryTake(1)) << i;
  EXPECT_FALSE(bucket.TryTake(1));
  EXPECT_DOUBLE_EQ(bucket.Available(), 0);
}

TEST(TokenBucketTest, AFailedTakeTakesNothing) {
  ManualClock clock;
  TokenBucket bucket(10, 1, clock);
  ASSERT_TRUE(bucket.TryTake(7));
  EXPECT_FALSE(bucket.TryTake(4));
  EXPECT_DOUBLE_EQ(bucket.Available(), 3);
  EXPECT_TRUE(bucket.TryTake(3));
}

TEST(TokenBucketTest, RefillsAtItsRateUpToItsCapacity) {
  ManualClock clock;
  TokenBucket bucket(5, 2, clock);
  ASSERT_TRUE(bucket.TryTake(5));
  clock.Advance(milliseconds(500));
  EXPECT_DOUBLE_EQ(bucket.Available(), 1);
  clock.Advance(seconds(1));
  EXPECT_DOUBLE_EQ(bucket.Available(), 3);
  clock.Advance(seconds(100));
  EXPECT_DOUBLE_EQ(bucket.Available(), 5);
}

TEST(TokenBucketTest, SecondsUntilIsTheWaitForTheMissingTokens) {
  ManualClock clock;
  TokenBucket bucket(10, 2, clock);
  ASSERT_TRUE(bucket.TryTake(10));
  EXPECT_DOUBLE_EQ(bucket.SecondsUntil(0), 0);
  EXPECT_DOUBLE_EQ(bucket.SecondsUntil(3), 1.5);
  clock.Advance(milliseconds(1499));
  EXPECT_FALSE(bucket.TryTake(3));
  EXPECT_NEAR(bucket.SecondsUntil(3), 0.001, 1e-9);
  clock.Advance(milliseconds(1));
  EXPECT_DOUBLE_EQ(bucket.SecondsUntil(3), 0);
  EXPECT_TRUE(bucket.TryTake(3));
}

TEST(TokenBucketTest, WaitingExactlySecondsUntilIsEnough) {
  ManualClock clock;
  TokenBucket bucket(60, 1.0 / 3, clock);  // an awkward rate
  ASSERT_TRUE(bucket.TryTake(60));
  for (int n : {1, 7, 13}) {
    const double wait = bucket.SecondsUntil(n);
    ASSERT_GT(wait, 0);
    clock.Advance(std::chrono::nanoseconds(static_cast<int64_t>(std::llround(wait * 1e9))));
    EXPECT_TRUE(bucket.TryTake(n)) << n;
  }
}

TEST(TokenBucketTest, MoreThanTheCapacityIsNeverAvailable) {
  ManualClock clock;
  TokenBucket bucket(10, 1, clock);
  EXPECT_TRUE(std::isinf(bucket.SecondsUntil(11)));
  EXPECT_FALSE(bucket.TryTake(11));
  EXPECT_DOUBLE_EQ(bucket.SecondsUntil(10), 0);
}

TEST(TokenBucketTest, ChargeGoesIntoDebtButNotBelowMinusCapacity) {
  ManualClock clock;
  TokenBucket bucket(10, 2, clock);
  bucket.Charge(14);
  EXPECT_DOUBLE_EQ(bucket.Available(), -4);
  EXPECT_DOUBLE_EQ(bucket.SecondsUntil(1), 2.5);
  bucket.Charge(100);
  EXPECT_DOUBLE_EQ(bucket.Available(), -10);
  clock.Advance(seconds(5));
  EXPECT_DOUBLE_EQ(bucket.Available(), 0);
}

TEST(TokenBucketTest, RefundNeverExceedsTheCapacity) {
  ManualClock clock;
  TokenBucket bucket(10, 1, clock);
  ASSERT_TRUE(bucket.TryTake(4));
  bucket.Refund(3);
  EXPECT_DOUBLE_EQ(bucket.Available(), 9);
  bucket.Refund(3);
  EXPECT_DOUBLE_EQ(bucket.Available(), 10);
}

TEST(TokenBucketTest, SetRateKeepsTheLevelWithinTheNewCapacity) {
  ManualClock clock;
  TokenBucket bucket(10, 1, clock);
  ASSERT_TRUE(bucket.TryTake(2));
  bucket.SetRate(20, 4);
  EXPECT_DOUBLE_EQ(bucket.Available(), 8);
  clock.Advance(seconds(1));
  EXPECT_DOUBLE_EQ(bucket.Available(), 12);
  bucket.SetRate(5, 1);
  EXPECT_DOUBLE_EQ(bucket.Available(), 5);
  EXPECT_DOUBLE_EQ(bucket.capacity(), 5);
  EXPECT_DOUBLE_EQ(bucket.refill_per_second(), 1);
}

}  // namespace
}  // namespace conclave::server::auth
