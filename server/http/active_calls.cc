#include "server/http/active_calls.h"

#include <utility>

namespace conclave::server::http {

ActiveCalls::Registration::~Registration() { calls_.Remove(id_); }

std::unique_ptr<ActiveCalls::Registration> ActiveCalls::Add(std::function<void()> cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t id = next_id_++;
  calls_.emplace(id, Call{std::move(cancel)});
  return std::unique_ptr<Registration>(new Registration(*this, id));
}

void ActiveCalls::Remove(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.erase(id);
  if (calls_.empty()) idle_.notify_all();
}

bool ActiveCalls::WaitIdle(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return calls_.empty(); });
}

void ActiveCalls::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, call] : calls_) {
    if (call.cancelled) continue;
    call.cancelled = true;
    call.cancel();
  }
}

int ActiveCalls::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(calls_.size());
}

}  // namespace conclave::server::http
