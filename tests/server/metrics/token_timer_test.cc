#include "server/metrics/token_timer.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace conclave::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(TokenTimerTest, TheFirstTokenEndsTheTimeToFirstTokenAndClosesNoGap) {
  TokenTimer timer(kStart);
  const TokenTimer::Arrival a = timer.OnTokens(1, kStart + absl::Milliseconds(120));
  ASSERT_TRUE(a.time_to_first_token.has_value());
  EXPECT_EQ(*a.time_to_first_token, absl::Milliseconds(120));
  EXPECT_EQ(a.gaps, 0);
}

TEST(TokenTimerTest, EachLaterTokenClosesOneGapSinceThePreviousArrival) {
  TokenTimer timer(kStart);
  timer.OnTokens(1, kStart + absl::Milliseconds(100));
  const TokenTimer::Arrival a = timer.OnTokens(1, kStart + absl::Milliseconds(130));
  EXPECT_FALSE(a.time_to_first_token.has_value());
  EXPECT_EQ(a.gaps, 1);
  EXPECT_EQ(a.gap, absl::Milliseconds(30));
}

TEST(TokenTimerTest, TokensArrivingTogetherShareTheGapEvenly) {
  TokenTimer timer(kStart);
  timer.OnTokens(1, kStart + absl::Milliseconds(100));
  const TokenTimer::Arrival a = timer.OnTokens(4, kStart + absl::Milliseconds(180));
  EXPECT_EQ(a.gaps, 4);
  EXPECT_EQ(a.gap, absl::Milliseconds(20));
}

TEST(TokenTimerTest, TokensMergedIntoTheFirstArrivalAddNoGap) {
  TokenTimer timer(kStart);
  const TokenTimer::Arrival a = timer.OnTokens(3, kStart + absl::Milliseconds(50));
  EXPECT_EQ(*a.time_to_first_token, absl::Milliseconds(50));
  EXPECT_EQ(a.gaps, 0);
}

TEST(TokenTimerTest, AnArrivalWithoutTokensChangesNothing) {
  TokenTimer timer(kStart);
  const TokenTimer::Arrival none = timer.OnTokens(0, kStart + absl::Milliseconds(10));
  EXPECT_FALSE(none.time_to_first_token.has_value());
  EXPECT_EQ(none.gaps, 0);
  // The first token is still measured from the start.
  EXPECT_EQ(*timer.OnTokens(1, kStart + absl::Milliseconds(70)).time_to_first_token,
            absl::Milliseconds(70));
}

}  // namespace
}  // namespace conclave::server
