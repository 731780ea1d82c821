// AccessControl: authenticate a bearer, admit under its key's quotas, the
// key's cache salt, finish with actual usage; open mode; per-key metrics.
#include "server/access_control.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "server/auth/api_key.h"
#include "server/auth/clock.h"
#include "server/auth/key_store.h"
#include "server/auth/quota.h"
#include "server/metrics/server_metrics.h"
#include "tests/server/metrics/collected.h"

namespace conclave::server {
namespace {

using testing::Collected;

const absl::Time kNow = absl::FromUnixSeconds(1750000000);
constexpr std::chrono::milliseconds kInterval(1000);

class AccessControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/access_control_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/keys.json";
    alice_ = Issue("alice", {});
    auth::QuotaOverrides tight;
    tight.max_concurrent_requests = 1;
    tight.max_agents = 2;
    tight.tokens_per_minute = 600;  // 10 tokens a second
    bob_ = Issue("bob", tight);
    access_ = Make();
  }
  void TearDown() override {
    access_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Issue(const std::string& name, const auth::QuotaOverrides& limits) {
    std::string key;
    const absl::Status s = auth::UpdateKeyStoreFile(path_, true, [&](auth::KeyStore& store) {
      absl::StatusOr<std::string> issued = store.Issue(name, limits, kNow);
      if (issued.ok()) key = *issued;
      return issued.status();
    });
    EXPECT_TRUE(s.ok()) << s;
    return key;
  }

  static std::string IdOf(const std::string& key) {
    return key.substr(auth::kApiKeyPrefix.size(), auth::kKeyIdLength);
  }
  static std::string Bearer(const std::string& key) { return "Bearer " + key; }

  std::unique_ptr<AccessControl> Make() {
    AccessControl::Options o;
    o.key_store_path = path_;
    o.check_interval = kInterval;
    o.clock = &clock_;
    o.metrics = &metrics_;
    absl::StatusOr<std::unique_ptr<AccessControl>> a = AccessControl::Create(o);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *std::move(a) : nullptr;
  }

  double Rejections(const std::string& reason) const {
    return Collected(*metrics_.registry())
        .Counter("conclave_auth_rejections_total", {{"reason", reason}});
  }

  auth::ManualClock clock_;
  ServerMetrics metrics_{"m", BuildInfo{"0", "abc", "cpu"}};
  std::string dir_, path_, alice_, bob_;
  std::unique_ptr<AccessControl> access_;
};

TEST_F(AccessControlTest, AValidKeyGetsItsIdItsLimitsAndItsOwnCacheSalt) {
  absl::StatusOr<Caller> caller = access_->Authenticate(Bearer(alice_));
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_FALSE(caller->open_mode());
  EXPECT_EQ(caller->key_id(), IdOf(alice_));
  EXPECT_EQ(caller->cache_salt(), auth::CacheSaltForKey(IdOf(alice_)));
  EXPECT_NE(caller->cache_salt(), auth::kOpenModeCacheSalt);
  EXPECT_EQ(caller->limits().max_agents, auth::QuotaLimits().max_agents);

  absl::StatusOr<Caller> other = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->cache_salt(), caller->cache_salt());
  EXPECT_EQ(other->limits().max_agents, 2);
}

TEST_F(AccessControlTest, MissingMalformedAndUnknownKeysAreUnauthenticatedAndCounted) {
  EXPECT_TRUE(absl::IsUnauthenticated(access_->Authenticate(std::nullopt).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(access_->Authenticate("  ").status()));
  EXPECT_EQ(Rejections("missing_key"), 2);

  const absl::Status malformed = access_->Authenticate("Bearer not-a-key").status();
  EXPECT_TRUE(absl::IsUnauthenticated(malformed));
  EXPECT_EQ(malformed.message().find("not-a-key"), std::string::npos) << malformed;

  std::string wrong = alice_;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  const absl::Status bad_secret = access_->Authenticate(Bearer(wrong)).status();
  EXPECT_TRUE(absl::IsUnauthenticated(bad_secret));
  EXPECT_EQ(bad_secret.message().find(wrong.substr(17)), std::string::npos) << bad_secret;
  EXPECT_EQ(Rejections("invalid_key"), 2);
}

TEST_F(AccessControlTest, ARevocationTakesEffectAfterTheCheckIntervalAndCountsAReload) {
  ASSERT_TRUE(access_->Authenticate(Bearer(alice_)).ok());
  ASSERT_TRUE(auth::UpdateKeyStoreFile(path_, false, [&](auth::KeyStore& store) {
                return store.Revoke(IdOf(alice_), kNow);
              }).ok());
  clock_.Advance(kInterval);
  const absl::Status revoked = access_->Authenticate(Bearer(alice_)).status();
  EXPECT_TRUE(absl::IsPermissionDenied(revoked)) << revoked;
  EXPECT_EQ(Rejections("revoked"), 1);
  EXPECT_EQ(Collected(*metrics_.registry()).Counter("conclave_key_store_reloads_total"), 1);
  EXPECT_TRUE(access_->Authenticate(Bearer(bob_)).ok());
}

TEST_F(AccessControlTest, ConcurrencyLimitRejectsWithRetryAfterUntilTheLeaseIsFinished) {
  absl::StatusOr<Caller> first = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->Admit({1, 0, 10}).ok());

  absl::StatusOr<Caller> second = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(second.ok());
  const absl::Status busy = second->Admit({1, 0, 10});
  EXPECT_TRUE(absl::IsResourceExhausted(busy)) << busy;
  EXPECT_TRUE(auth::RetryAfterSeconds(busy).has_value());
  EXPECT_EQ(Rejections("concurrency"), 1);
  second->Finish(busy.code(), {});

  first->Finish(absl::StatusCode::kOk, {4, 6, 6});
  absl::StatusOr<Caller> third = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->Admit({1, 0, 10}).ok());
  third->Finish(absl::StatusCode::kCancelled, {2, 1, 1});

  const Collected c(*metrics_.registry());
  const std::string id = IdOf(bob_);
  EXPECT_EQ(c.Counter("conclave_key_requests_total", {{"key_id", id}, {"code", "OK"}}), 1);
  EXPECT_EQ(c.Counter("conclave_key_requests_total",
                      {{"key_id", id}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
  EXPECT_EQ(c.Counter("conclave_key_requests_total", {{"key_id", id}, {"code", "CANCELLED"}}),
            1);
  EXPECT_EQ(c.Counter("conclave_key_prompt_tokens_total", {{"key_id", id}}), 6);
  EXPECT_EQ(c.Counter("conclave_key_generation_tokens_total", {{"key_id", id}}), 7);
  EXPECT_EQ(c.Counter("conclave_key_agent_tokens_total", {{"key_id", id}}), 7);
}

TEST_F(AccessControlTest, TokensPerMinuteRefundsTheUnusedEstimateAndRecoversWithTime) {
  // bob: 600 tokens a minute, 10 a second.
  absl::StatusOr<Caller> a = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->Admit({1, 0, 600}).ok());
  a->Finish(absl::StatusCode::kOk, {100, 100, 100});  // 400 of the estimate come back

  absl::StatusOr<Caller> b = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(b.ok());
  const absl::Status over = b->Admit({1, 0, 500});
  EXPECT_TRUE(absl::IsResourceExhausted(over)) << over;
  ASSERT_TRUE(auth::RetryAfterSeconds(over).has_value());
  EXPECT_NEAR(*auth::RetryAfterSeconds(over), 10.0, 0.01);  // 100 missing at 10/s
  EXPECT_EQ(Rejections("rate_limited"), 1);
  b->Finish(over.code(), {});

  clock_.Advance(std::chrono::seconds(10));
  absl::StatusOr<Caller> c = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->Admit({1, 0, 500}).ok());
  c->Finish(absl::StatusCode::kOk, {});
}

TEST_F(AccessControlTest, ARequestAboveTheKeysLimitsIsInvalid) {
  absl::StatusOr<Caller> caller = access_->Authenticate(Bearer(bob_));
  ASSERT_TRUE(caller.ok());
  const absl::Status s = caller->Admit({3, 0, 10});
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("max_agents=2"), std::string::npos) << s;
  EXPECT_EQ(Rejections("request_over_limit"), 1);
}

TEST_F(AccessControlTest, EveryKeyOfTheStoreHasItsSeriesFromTheStart) {
  const Collected c(*metrics_.registry());
  for (const std::string& key : {alice_, bob_}) {
    EXPECT_EQ(c.Counter("conclave_key_requests_total", {{"key_id", IdOf(key)}, {"code", "OK"}}),
              0);
    EXPECT_EQ(c.Counter("conclave_key_prompt_tokens_total", {{"key_id", IdOf(key)}}), 0);
  }
  // The key ids are public; no series or label carries a secret.
  for (const prometheus::MetricFamily& f : c.families()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        EXPECT_EQ(l.value.find(alice_.substr(17)), std::string::npos);
        EXPECT_EQ(l.value.find(bob_.substr(17)), std::string::npos);
      }
    }
  }
}

TEST_F(AccessControlTest, AStoreThatCannotBeLoadedFailsCreation) {
  AccessControl::Options o;
  o.key_store_path = dir_ + "/missing.json";
  EXPECT_TRUE(absl::IsNotFound(AccessControl::Create(o).status()));
}

TEST(AccessControlOpenModeTest, EveryoneIsLetInWithSaltZeroAndNoQuota) {
  std::unique_ptr<AccessControl> open = AccessControl::Open();
  EXPECT_TRUE(open->open_mode());
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Caller> caller = open->Authenticate(std::nullopt);
    ASSERT_TRUE(caller.ok());
    EXPECT_TRUE(caller->open_mode());
    EXPECT_EQ(caller->cache_salt(), auth::kOpenModeCacheSalt);
    EXPECT_TRUE(caller->Admit({1000, 100000, int64_t{1} << 40}).ok());
    // Not finished: open mode holds nothing.
  }
  EXPECT_TRUE(open->UsageSnapshot().empty());
  EXPECT_NE(open->Describe().find("open mode"), std::string::npos);
}

TEST(EstimateTokensTest, PromptBytesOverFourCappedPlusEveryAgentsMaxTokens) {
  EXPECT_EQ(EstimateTokens(0, 100, 1, 1, 10), 10);
  EXPECT_EQ(EstimateTokens(9, 100, 1, 1, 10), 3 + 10);
  EXPECT_EQ(EstimateTokens(4000, 100, 1, 4, 10), 100 + 40);  // prompt capped
  EXPECT_EQ(EstimateTokens(40, 100, 2, 1, 10), 20 + 10);     // thinking prefills twice
}

}  // namespace
}  // namespace conclave::server
