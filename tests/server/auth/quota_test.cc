// Per-key admission: every limit, leases, token reconciliation, usage
// counters, Retry-After. Time is a ManualClock.
#include "server/auth/quota.h"

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::server::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kKey[] = "aaaaaaaaaaaa";
constexpr char kOtherKey[] = "bbbbbbbbbbbb";

// No limit at all unless a test sets one.
QuotaLimits NoLimits() { return QuotaLimits{0, 0, 0, 0, 0}; }

std::optional<KeyUsage> UsageOf(const QuotaManager& quotas, const std::string& key_id) {
  for (const KeyUsage& usage : quotas.UsageSnapshot()) {
    if (usage.key_id == key_id) return usage;
  }
  return std::nullopt;
}

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

class QuotaTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  QuotaManager quotas_{clock_};
};

TEST_F(QuotaTest, ServerDefaultsAreOverriddenFieldByField) {
  const QuotaLimits defaults;
  QuotaOverrides overrides;
  overrides.max_agents = 2;
  overrides.tokens_per_minute = 0;
  const QuotaLimits limits = ApplyOverrides(defaults, overrides);
  EXPECT_EQ(limits.max_agents, 2);
  EXPECT_EQ(limits.tokens_per_minute, 0);
  EXPECT_EQ(limits.requests_per_minute, defaults.requests_per_minute);
  EXPECT_EQ(limits.max_concurrent_requests, defaults.max_concurrent_requests);
  EXPECT_EQ(limits.max_thinking_budget, defaults.max_thinking_budget);
}

TEST_F(QuotaTest, AdmitsARequestWithinEveryLimit) {
  const QuotaLimits limits{10, 1000, 2, 4, 512};
  absl::StatusOr<Lease> lease =
      quotas_.Admit(kKey, limits, {.agents = 4, .thinking_budget = 512, .estimated_tokens = 1000});
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->key_id(), kKey);
  EXPECT_EQ(lease->estimated_tokens(), 1000);
}

TEST_F(QuotaTest, MoreAgentsThanTheKeyAllowsIsAnInvalidArgumentThatTakesNothing) {
  QuotaLimits limits = NoLimits();
  limits.max_agents = 4;
  limits.requests_per_minute = 1;
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.agents = 5});
  ASSERT_EQ(lease.status().code(), absl::StatusCode::kInvalidArgument) << lease.status();
  EXPECT_TRUE(Contains(lease.status(), "agents=5 exceeds this API key's max_agents=4"))
      << lease.status();
  EXPECT_FALSE(RetryAfterSeconds(lease.status()).has_value());
  // The one request of the minute is still there.
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.agents = 4}).ok());
}

TEST_F(QuotaTest, AThinkingBudgetAboveTheKeysLimitIsAnInvalidArgument) {
  QuotaLimits limits = NoLimits();
  limits.max_thinking_budget = 1024;
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.thinking_budget = 1025});
  ASSERT_EQ(lease.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(lease.status(), "thinking_budget=1025"));
  EXPECT_TRUE(Contains(lease.status(), "max_thinking_budget=1024"));
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.thinking_budget = 1024}).ok());
}

TEST_F(QuotaTest, AnEstimateLargerThanAMinutesTokensCanNeverRun) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 1000;
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.estimated_tokens = 1001});
  ASSERT_EQ(lease.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(lease.status(), "tokens_per_minute=1000")) << lease.status();
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 1000}).ok());
}

TEST_F(QuotaTest, ZeroMeansNoLimit) {
  std::vector<Lease> leases;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Lease> lease = quotas_.Admit(
        kKey, NoLimits(), {.agents = 1000, .thinking_budget = 100000, .estimated_tokens = 1 << 30});
    ASSERT_TRUE(lease.ok()) << lease.status();
    leases.push_back(*std::move(lease));
  }
  EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 100);
}

TEST_F(QuotaTest, RequestsPerMinuteRefuseTheExtraRequestUntilOneRefills) {
  QuotaLimits limits = NoLimits();
  limits.requests_per_minute = 3;  // one every 20 s
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(quotas_.Admit(kKey, limits, {}).ok()) << i;
  absl::StatusOr<Lease> refused = quotas_.Admit(kKey, limits, {});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(refused.status(), "requests_per_minute=3")) << refused.status();
  ASSERT_TRUE(RetryAfterSeconds(refused.status()).has_value());
  EXPECT_DOUBLE_EQ(*RetryAfterSeconds(refused.status()), 20);
  clock_.Advance(seconds(19));
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  clock_.Advance(seconds(1));
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
}

TEST_F(QuotaTest, TokensPerMinuteRefuseAnEstimateThatDoesNotFitYet) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 600;  // 10 per second
  absl::StatusOr<Lease> first = quotas_.Admit(kKey, limits, {.estimated_tokens = 500});
  ASSERT_TRUE(first.ok());
  first->Finish({.prompt_tokens = 200, .generated_tokens = 300});
  absl::StatusOr<Lease> refused = quotas_.Admit(kKey, limits, {.estimated_tokens = 200});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(refused.status(), "tokens_per_minute=600")) << refused.status();
  EXPECT_TRUE(Contains(refused.status(), "100 are available")) << refused.status();
  EXPECT_DOUBLE_EQ(*RetryAfterSeconds(refused.status()), 10);
  clock_.Advance(seconds(10));
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 200}).ok());
}

TEST_F(QuotaTest, ARefusalForTwoLimitsNamesBothAndWaitsForTheLonger) {
  const QuotaLimits limits{1, 60, 0, 0, 0};  // a request each 60 s, a token each 1 s
  ASSERT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 60}).ok());
  absl::StatusOr<Lease> refused = quotas_.Admit(kKey, limits, {.estimated_tokens = 30});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(refused.status(), "requests_per_minute=1")) << refused.status();
  EXPECT_TRUE(Contains(refused.status(), "tokens_per_minute=60")) << refused.status();
  EXPECT_DOUBLE_EQ(*RetryAfterSeconds(refused.status()), 60);
}

TEST_F(QuotaTest, TheConcurrencyLimitIsReleasedWhenALeaseIsDestroyed) {
  QuotaLimits limits = NoLimits();
  limits.max_concurrent_requests = 2;
  absl::StatusOr<Lease> a = quotas_.Admit(kKey, limits, {});
  ASSERT_TRUE(a.ok());
  {
    absl::StatusOr<Lease> b = quotas_.Admit(kKey, limits, {});
    ASSERT_TRUE(b.ok());
    absl::StatusOr<Lease> refused = quotas_.Admit(kKey, limits, {});
    ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_TRUE(Contains(refused.status(), "max_concurrent_requests=2")) << refused.status();
    EXPECT_DOUBLE_EQ(*RetryAfterSeconds(refused.status()), 1);
    EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 2);
  }
  EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 1);
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
}

TEST_F(QuotaTest, FinishReleasesTheSlotAtOnce) {
  QuotaLimits limits = NoLimits();
  limits.max_concurrent_requests = 1;
  absl::StatusOr<Lease> a = quotas_.Admit(kKey, limits, {});
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  a->Finish({});
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
}

TEST_F(QuotaTest, AMovedLeaseHoldsOneSlotAndReleasesItOnce) {
  QuotaLimits limits = NoLimits();
  limits.max_concurrent_requests = 1;
  absl::StatusOr<Lease> admitted = quotas_.Admit(kKey, limits, {});
  ASSERT_TRUE(admitted.ok());
  {
    Lease moved = *std::move(admitted);
    Lease assigned = std::move(moved);
    EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 1);
    EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  }
  EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 0);
  absl::StatusOr<Lease> again = quotas_.Admit(kKey, limits, {});
  ASSERT_TRUE(again.ok());
  // Assigning over a live lease releases that one's slot.
  absl::StatusOr<Lease> other = quotas_.Admit(kOtherKey, limits, {});
  ASSERT_TRUE(other.ok());
  *again = *std::move(other);
  EXPECT_EQ(UsageOf(quotas_, kKey)->running_requests, 0);
  EXPECT_EQ(UsageOf(quotas_, kOtherKey)->running_requests, 1);
}

TEST_F(QuotaTest, FinishRefundsTheUnusedEstimate) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 1000;
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.estimated_tokens = 1000});
  ASSERT_TRUE(lease.ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {.estimated_tokens = 700}).ok());
  lease->Finish({.prompt_tokens = 100, .generated_tokens = 200});
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 700}).ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {.estimated_tokens = 1}).ok());
}

TEST_F(QuotaTest, FinishChargesTokensBeyondTheEstimate) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 1000;
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.estimated_tokens = 100});
  ASSERT_TRUE(lease.ok());
  lease->Finish({.prompt_tokens = 100, .generated_tokens = 500});
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {.estimated_tokens = 401}).ok());
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 400}).ok());
}

TEST_F(QuotaTest, AKeyInDebtWaitsEvenForARequestThatEstimatesNothing) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 600;  // 10 per second
  absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {.estimated_tokens = 0});
  ASSERT_TRUE(lease.ok());
  lease->Finish({.prompt_tokens = 100, .generated_tokens = 600});  // 100 tokens of debt
  absl::StatusOr<Lease> refused = quotas_.Admit(kKey, limits, {.estimated_tokens = 0});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_DOUBLE_EQ(*RetryAfterSeconds(refused.status()), 10.1);
  clock_.Advance(milliseconds(10100));
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 0}).ok());
}

TEST_F(QuotaTest, ALeaseDroppedWithoutFinishKeepsItsEstimateCharged) {
  QuotaLimits limits = NoLimits();
  limits.tokens_per_minute = 1000;
  { ASSERT_TRUE(quotas_.Admit(kKey, limits, {.estimated_tokens = 800}).ok()); }
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {.estimated_tokens = 201}).ok());
  EXPECT_EQ(UsageOf(quotas_, kKey)->prompt_tokens, 0);
}

TEST_F(QuotaTest, UsageIsCountedPerKeyIdOnly) {
  const QuotaLimits limits{0, 0, 0, 2, 0};
  absl::StatusOr<Lease> a1 = quotas_.Admit(kKey, limits, {.agents = 2, .estimated_tokens = 50});
  absl::StatusOr<Lease> a2 = quotas_.Admit(kKey, limits, {.estimated_tokens = 50});
  absl::StatusOr<Lease> b1 = quotas_.Admit(kOtherKey, limits, {.estimated_tokens = 50});
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {.agents = 3}).ok());
  a1->Finish({.prompt_tokens = 10, .generated_tokens = 30, .agent_tokens = 24});
  a2->Finish({.prompt_tokens = 5, .generated_tokens = 7, .agent_tokens = 7});

  const std::vector<KeyUsage> usage = quotas_.UsageSnapshot();
  ASSERT_EQ(usage.size(), 2u);
  EXPECT_EQ(usage[0].key_id, kKey);  // by key id
  EXPECT_EQ(usage[0].admitted_requests, 2);
  EXPECT_EQ(usage[0].rejected_requests, 1);
  EXPECT_EQ(usage[0].prompt_tokens, 15);
  EXPECT_EQ(usage[0].generated_tokens, 37);
  EXPECT_EQ(usage[0].agent_tokens, 31);
  EXPECT_EQ(usage[0].running_requests, 0);
  EXPECT_EQ(usage[1].key_id, kOtherKey);
  EXPECT_EQ(usage[1].admitted_requests, 1);
  EXPECT_EQ(usage[1].rejected_requests, 0);
  EXPECT_EQ(usage[1].prompt_tokens, 0);
  EXPECT_EQ(usage[1].running_requests, 1);
}

TEST_F(QuotaTest, KeysHaveTheirOwnBuckets) {
  QuotaLimits limits = NoLimits();
  limits.requests_per_minute = 1;
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  EXPECT_TRUE(quotas_.Admit(kOtherKey, limits, {}).ok());
}

TEST_F(QuotaTest, NewLimitsTakeEffectAtTheNextRequest) {
  QuotaLimits limits = NoLimits();
  limits.requests_per_minute = 2;
  ASSERT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
  ASSERT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  // A larger bucket keeps its (empty) level: no free burst from raising it.
  limits.requests_per_minute = 120;  // 2 per second
  EXPECT_FALSE(quotas_.Admit(kKey, limits, {}).ok());
  clock_.Advance(milliseconds(500));
  EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
  limits.requests_per_minute = 0;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(quotas_.Admit(kKey, limits, {}).ok());
}

TEST_F(QuotaTest, ALeaseMayOutliveItsManager) {
  auto quotas = std::make_unique<QuotaManager>(clock_);
  absl::StatusOr<Lease> lease = quotas->Admit(kKey, NoLimits(), {});
  ASSERT_TRUE(lease.ok());
  quotas.reset();
  lease->Finish({.prompt_tokens = 1});
}

TEST_F(QuotaTest, ConcurrentRequestsNeverExceedTheConcurrencyLimit) {
  QuotaLimits limits = NoLimits();
  limits.max_concurrent_requests = 3;
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        absl::StatusOr<Lease> lease = quotas_.Admit(kKey, limits, {});
        if (!lease.ok()) continue;
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        ++admitted;
        --running;
        lease->Finish({.prompt_tokens = 1});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_GT(admitted.load(), 0);
  const KeyUsage usage = *UsageOf(quotas_, kKey);
  EXPECT_EQ(usage.running_requests, 0);
  EXPECT_EQ(usage.admitted_requests, admitted.load());
  EXPECT_EQ(usage.admitted_requests + usage.rejected_requests, 8 * 500);
  EXPECT_EQ(usage.prompt_tokens, admitted.load());
}

TEST(RetryAfterTest, ThePayloadRoundTripsAndTheHeaderRoundsUp) {
  const absl::Status status = RetryLaterError("slow down", 2.5);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "slow down");
  EXPECT_DOUBLE_EQ(*RetryAfterSeconds(status), 2.5);
  EXPECT_NEAR(*RetryAfterSeconds(RetryLaterError("x", 0.0001)), 0.001, 1e-12);  // never early
  EXPECT_FALSE(RetryAfterSeconds(absl::OkStatus()).has_value());
  EXPECT_FALSE(RetryAfterSeconds(absl::ResourceExhaustedError("no payload")).has_value());
  EXPECT_EQ(RetryAfterHeaderSeconds(0), 1);
  EXPECT_EQ(RetryAfterHeaderSeconds(0.2), 1);
  EXPECT_EQ(RetryAfterHeaderSeconds(1), 1);
  EXPECT_EQ(RetryAfterHeaderSeconds(1.01), 2);
  EXPECT_EQ(RetryAfterHeaderSeconds(59.5), 60);
}

}  // namespace
}  // namespace conclave::server::auth
