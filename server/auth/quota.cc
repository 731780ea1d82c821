#include "server/auth/quota.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "server/auth/token_bucket.h"

namespace conclave::server::auth {

// One key's buckets and counters.
struct Lease::KeyState {
  std::optional<TokenBucket> requests;  // absent while requests_per_minute is 0
  std::optional<TokenBucket> tokens;    // absent while tokens_per_minute is 0
  KeyUsage usage;
};

// What the manager and its leases share, so that a lease may outlive the
// manager.
struct Lease::Shared {
  explicit Shared(const Clock& c) : clock(c) {}
  const Clock& clock;
  mutable std::mutex mu;  // guards `keys` and everything in it
  // std::map: KeyState addresses stay valid (leases hold them); keys are
  // never erased (one entry per key of the store).
  std::map<std::string, KeyState, std::less<>> keys;
};

namespace {

// A client over a concurrency limit learns nothing about when a slot frees;
// one second is a polite polling interval.
constexpr double kConcurrencyRetrySeconds = 1;

// Keeps `bucket` in step with a per-minute limit (0: no bucket).
void ConfigureBucket(std::optional<TokenBucket>& bucket, int64_t per_minute, const Clock& clock) {
  if (per_minute <= 0) {
    bucket.reset();
    return;
  }
  const double capacity = static_cast<double>(per_minute);
  const double refill = capacity / 60;
  if (!bucket.has_value()) {
    bucket.emplace(capacity, refill, clock);
  } else if (bucket->capacity() != capacity) {
    bucket->SetRate(capacity, refill);
  }
}

std::string Seconds(double s) { return absl::StrFormat("%.1f s", std::max(s, 0.1)); }

}  // namespace

QuotaLimits ApplyOverrides(const QuotaLimits& defaults, const QuotaOverrides& overrides) {
  QuotaLimits limits = defaults;
  for (const QuotaField& field : kQuotaFields) {
    if ((overrides.*field.override).has_value()) limits.*field.limit = *(overrides.*field.override);
  }
  return limits;
}

Lease::Lease(std::shared_ptr<Shared> shared, KeyState* key, std::string key_id,
             int64_t estimated_tokens)
    : shared_(std::move(shared)),
      key_(key),
      key_id_(std::move(key_id)),
      estimated_tokens_(estimated_tokens) {}

Lease::Lease(Lease&& other) noexcept
    : shared_(std::move(other.shared_)),
      key_(std::exchange(other.key_, nullptr)),
      key_id_(std::move(other.key_id_)),
      estimated_tokens_(other.estimated_tokens_) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    shared_ = std::move(other.shared_);
    key_ = std::exchange(other.key_, nullptr);
    key_id_ = std::move(other.key_id_);
    estimated_tokens_ = other.estimated_tokens_;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (shared_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    CHECK_GT(key_->usage.running_requests, 0) << "key " << key_id_;
    --key_->usage.running_requests;
  }
  shared_.reset();
  key_ = nullptr;
}

void Lease::Finish(const TokenUsage& usage) {
  CHECK(shared_ != nullptr) << "Lease::Finish on a finished or moved-from lease of key " << key_id_;
  CHECK_GE(usage.prompt_tokens, 0);
  CHECK_GE(usage.generated_tokens, 0);
  CHECK_GE(usage.agent_tokens, 0);
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (key_->tokens.has_value()) {
      const int64_t actual = usage.prompt_tokens + usage.generated_tokens;
      if (actual < estimated_tokens_) {
        key_->tokens->Refund(static_cast<double>(estimated_tokens_ - actual));
      } else {
        key_->tokens->Charge(static_cast<double>(actual - estimated_tokens_));
      }
    }
    key_->usage.prompt_tokens += usage.prompt_tokens;
    key_->usage.generated_tokens += usage.generated_tokens;
    key_->usage.agent_tokens += usage.agent_tokens;
  }
  Release();
}

QuotaManager::QuotaManager(const Clock& clock) : shared_(std::make_shared<Lease::Shared>(clock)) {}

QuotaManager::~QuotaManager() = default;

absl::StatusOr<Lease> QuotaManager::Admit(absl::string_view key_id, const QuotaLimits& limits,
                                          const AdmissionRequest& request) {
  CHECK_GE(request.agents, 0);
  CHECK_GE(request.thinking_budget, 0);
  CHECK_GE(request.estimated_tokens, 0);
  std::lock_guard<std::mutex> lock(shared_->mu);
  auto it = shared_->keys.find(key_id);
  if (it == shared_->keys.end()) {
    it = shared_->keys.emplace(std::string(key_id), Lease::KeyState()).first;
    it->second.usage.key_id = std::string(key_id);
  }
  Lease::KeyState& key = it->second;
  ConfigureBucket(key.requests, limits.requests_per_minute, shared_->clock);
  ConfigureBucket(key.tokens, limits.tokens_per_minute, shared_->clock);

  auto reject = [&](absl::Status status) {
    ++key.usage.rejected_requests;
    return status;
  };
  if (limits.max_agents > 0 && request.agents > limits.max_agents) {
    return reject(absl::InvalidArgumentError(absl::StrCat(
        "agents=", request.agents, " exceeds this API key's max_agents=", limits.max_agents)));
  }
  if (limits.max_thinking_budget > 0 && request.thinking_budget > limits.max_thinking_budget) {
    return reject(absl::InvalidArgumentError(
        absl::StrCat("thinking_budget=", request.thinking_budget,
                     " exceeds this API key's max_thinking_budget=", limits.max_thinking_budget)));
  }
  if (limits.tokens_per_minute > 0 && request.estimated_tokens > limits.tokens_per_minute) {
    return reject(absl::InvalidArgumentError(
        absl::StrCat("the request may use up to ", request.estimated_tokens,
                     " tokens (prompt + max_tokens of every agent), more than this API key's "
                     "tokens_per_minute=",
                     limits.tokens_per_minute, "; ask for fewer tokens or agents")));
  }
  if (limits.max_concurrent_requests > 0 &&
      key.usage.running_requests >= limits.max_concurrent_requests) {
    return reject(RetryLaterError(
        absl::StrCat("API key ", key_id, " has ", key.usage.running_requests,
                     " requests running, its max_concurrent_requests=",
                     limits.max_concurrent_requests, "; retry when one has finished"),
        kConcurrencyRetrySeconds));
  }
  double retry_after = 0;
  std::vector<std::string> exceeded;
  if (key.requests.has_value()) {
    const double wait = key.requests->SecondsUntil(1);
    if (wait > 0) {
      retry_after = std::max(retry_after, wait);
      exceeded.push_back(absl::StrCat("requests_per_minute=", limits.requests_per_minute));
    }
  }
  if (key.tokens.has_value()) {
    // At least one token: a key in debt (Lease::Finish of an overrun) waits
    // even with requests that estimate nothing.
    const double needed = std::max<double>(static_cast<double>(request.estimated_tokens), 1);
    const double wait = key.tokens->SecondsUntil(needed);
    if (wait > 0) {
      retry_after = std::max(retry_after, wait);
      exceeded.push_back(absl::StrFormat(
          "tokens_per_minute=%d (the request may use %d tokens, %.0f are available)",
          limits.tokens_per_minute, request.estimated_tokens,
          std::max(0.0, std::floor(key.tokens->Available()))));
    }
  }
  if (!exceeded.empty()) {
    return reject(RetryLaterError(
        absl::StrCat("API key ", key_id, " is over its ", absl::StrJoin(exceeded, " and its "),
                     "; retry in ", Seconds(retry_after)),
        retry_after));
  }
  if (key.requests.has_value()) {
    CHECK(key.requests->TryTake(1)) << "key " << key_id;
  }
  if (key.tokens.has_value()) {
    CHECK(key.tokens->TryTake(static_cast<double>(request.estimated_tokens))) << "key " << key_id;
  }
  ++key.usage.admitted_requests;
  ++key.usage.running_requests;
  return Lease(shared_, &key, std::string(key_id), request.estimated_tokens);
}

std::vector<KeyUsage> QuotaManager::UsageSnapshot() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  std::vector<KeyUsage> usage;
  usage.reserve(shared_->keys.size());
  for (const auto& [id, key] : shared_->keys) usage.push_back(key.usage);
  return usage;
}

absl::Status RetryLaterError(absl::string_view message, double retry_after_seconds) {
  absl::Status status = absl::ResourceExhaustedError(message);
  // Milliseconds, rounded up: a client that waits this long is not early.
  const double ms = std::ceil(std::max(0.0, retry_after_seconds) * 1000 - 1e-6);
  status.SetPayload(kRetryAfterPayloadUrl, absl::Cord(absl::StrFormat("%.3f", ms / 1000)));
  return status;
}

std::optional<double> RetryAfterSeconds(const absl::Status& status) {
  const absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  double seconds = 0;
  if (!absl::SimpleAtod(std::string(*payload), &seconds)) return std::nullopt;
  return seconds;
}

int64_t RetryAfterHeaderSeconds(double seconds) {
  if (!(seconds >= 1)) return 1;  // also NaN
  return static_cast<int64_t>(std::ceil(std::min(seconds, 1e9)));
}

}  // namespace conclave::server::auth
