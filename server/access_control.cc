#include "server/access_control.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::server {
namespace {

// Which limit an Admit error is about (its message names the limit).
AuthRejection RejectionOf(const absl::Status& status) {
  if (absl::IsInvalidArgument(status)) return AuthRejection::kRequestOverLimit;
  if (absl::StrContains(status.message(), "max_concurrent_requests")) {
    return AuthRejection::kConcurrency;
  }
  return AuthRejection::kRateLimited;
}

std::vector<std::string> KeyIds(const auth::KeyStore& store) {
  std::vector<std::string> ids;
  ids.reserve(store.keys().size());
  for (const auth::KeyRecord& k : store.keys()) ids.push_back(k.id);
  return ids;
}

}  // namespace

Caller::Caller(AccessControl* access, std::string key_id, uint64_t cache_salt,
               auth::QuotaLimits limits)
    : access_(access), key_id_(std::move(key_id)), cache_salt_(cache_salt), limits_(limits) {}

Caller::Caller(Caller&& other) noexcept
    : access_(std::exchange(other.access_, nullptr)),
      key_id_(std::move(other.key_id_)),
      cache_salt_(other.cache_salt_),
      limits_(other.limits_),
      lease_(std::move(other.lease_)) {
  other.lease_.reset();
}

Caller& Caller::operator=(Caller&& other) noexcept {
  if (this != &other) {
    access_ = std::exchange(other.access_, nullptr);
    key_id_ = std::move(other.key_id_);
    cache_salt_ = other.cache_salt_;
    limits_ = other.limits_;
    lease_ = std::move(other.lease_);
    other.lease_.reset();
  }
  return *this;
}

// Without Finish the usage is unknown: the lease's destructor keeps its
// estimate charged, and nothing is counted.
Caller::~Caller() = default;

absl::Status Caller::Admit(const auth::AdmissionRequest& request) {
  CHECK(access_ != nullptr) << "Admit after Finish";
  CHECK(!lease_.has_value()) << "Admit twice, key " << key_id_;
  if (open_mode()) return absl::OkStatus();
  absl::StatusOr<auth::Lease> lease = access_->quotas_.Admit(key_id_, limits_, request);
  if (!lease.ok()) {
    access_->Reject(RejectionOf(lease.status()));
    return lease.status();
  }
  lease_.emplace(*std::move(lease));
  return absl::OkStatus();
}

void Caller::Finish(absl::StatusCode code, const auth::TokenUsage& usage) {
  CHECK(access_ != nullptr) << "Finish twice, key " << key_id_;
  if (lease_.has_value()) {
    lease_->Finish(usage);
    lease_.reset();
  }
  if (!open_mode() && access_->options_.metrics != nullptr) {
    access_->options_.metrics->OnKeyRequestFinished(key_id_, code, usage);
  }
  access_ = nullptr;
}

AccessControl::AccessControl(Options options, std::unique_ptr<auth::KeyStoreWatcher> watcher)
    : options_(std::move(options)),
      watcher_(std::move(watcher)),
      quotas_(options_.clock != nullptr ? *options_.clock : auth::SteadyClock()) {
  if (watcher_ != nullptr && options_.metrics != nullptr) {
    options_.metrics->OnKeysLoaded(KeyIds(*watcher_->Current()));
  }
}

absl::StatusOr<std::unique_ptr<AccessControl>> AccessControl::Create(Options options) {
  std::unique_ptr<auth::KeyStoreWatcher> watcher;
  if (!options.key_store_path.empty()) {
    auth::KeyStoreWatcher::Options w;
    w.check_interval = options.check_interval;
    w.clock = options.clock;
    absl::StatusOr<std::unique_ptr<auth::KeyStoreWatcher>> created =
        auth::KeyStoreWatcher::Create(options.key_store_path, w);
    if (!created.ok()) return created.status();
    watcher = *std::move(created);
  }
  return std::unique_ptr<AccessControl>(new AccessControl(std::move(options), std::move(watcher)));
}

std::unique_ptr<AccessControl> AccessControl::Open() {
  return std::unique_ptr<AccessControl>(new AccessControl(Options(), nullptr));
}

absl::StatusOr<Caller> AccessControl::Authenticate(
    std::optional<absl::string_view> authorization) {
  if (open_mode()) return Caller(this, "", auth::kOpenModeCacheSalt, options_.default_limits);
  absl::StatusOr<auth::KeyInfo> key = watcher_->Authenticate(authorization.value_or(""));
  NoteReloads();
  if (!key.ok()) {
    const bool missing =
        !authorization.has_value() || absl::StripAsciiWhitespace(*authorization).empty();
    Reject(missing                               ? AuthRejection::kMissingKey
           : absl::IsPermissionDenied(key.status()) ? AuthRejection::kRevoked
                                                    : AuthRejection::kInvalidKey);
    return key.status();
  }
  return Caller(this, key->id, key->cache_salt,
                auth::ApplyOverrides(options_.default_limits, key->limits));
}

std::string AccessControl::Describe() {
  if (open_mode()) {
    return "open mode: no API keys, no per-key quotas (allowed on a loopback address only)";
  }
  const std::shared_ptr<const auth::KeyStore> store = watcher_->Current();
  const int64_t revoked = std::count_if(store->keys().begin(), store->keys().end(),
                                        [](const auth::KeyRecord& k) { return k.revoked; });
  return absl::StrCat("API keys from ", watcher_->path(), " (", store->keys().size(), " keys, ",
                      revoked, " revoked; reloaded on change)");
}

void AccessControl::NoteReloads() {
  const int64_t now = watcher_->reloads();
  int64_t seen = reloads_seen_.load(std::memory_order_relaxed);
  // Only the thread that moves reloads_seen_ forward reports the difference,
  // so each reload is counted once.
  while (now > seen) {
    if (reloads_seen_.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
      if (options_.metrics != nullptr) {
        options_.metrics->OnKeyStoreReloads(now - seen);
        options_.metrics->OnKeysLoaded(KeyIds(*watcher_->Current()));
      }
      break;
    }
  }
}

void AccessControl::Reject(AuthRejection reason) {
  if (options_.metrics != nullptr) options_.metrics->OnAuthRejected(reason);
}

int64_t EstimateTokens(int64_t prompt_bytes, int64_t max_prompt_tokens, int prompt_passes,
                       int64_t agents, int64_t max_tokens) {
  int64_t prompt = (std::max<int64_t>(prompt_bytes, 0) + 3) / 4;
  if (max_prompt_tokens > 0) prompt = std::min(prompt, max_prompt_tokens);
  return prompt * std::max(prompt_passes, 1) + std::max<int64_t>(agents, 0) *
                                                   std::max<int64_t>(max_tokens, 0);
}

}  // namespace conclave::server
