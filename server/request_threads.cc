#include "server/request_threads.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace conclave::server {

RequestThreads::RequestThreads(int max_threads) : max_threads_(max_threads) {}

RequestThreads::~RequestThreads() { Close(); }

absl::Status RequestThreads::Run(std::function<void()> work) {
  Reap();
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::UnavailableError("server is shutting down");
  if (running_ >= max_threads_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server is running its limit of ", max_threads_, " concurrent requests; retry later"));
  }
  const int64_t id = next_id_++;
  ++running_;
  threads_.emplace(id, std::thread([this, id, work = std::move(work)]() mutable {
    work();
    work = nullptr;  // release what the work captured before reporting done
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(id);
    --running_;
    idle_.notify_all();
  }));
  return absl::OkStatus();
}

void RequestThreads::Reap() {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int64_t id : finished_) {
      auto it = threads_.find(id);
      done.push_back(std::move(it->second));
      threads_.erase(it);
    }
    finished_.clear();
  }
  for (std::thread& t : done) t.join();
}

void RequestThreads::Close() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    closed_ = true;
    idle_.wait(lock, [this] { return running_ == 0; });
  }
  Reap();
}

int RequestThreads::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

}  // namespace conclave::server
