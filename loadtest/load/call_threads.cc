#include "loadtest/load/call_threads.h"

#include <utility>
#include <vector>

namespace conclave::loadtest {

std::vector<std::thread> CallThreads::TakeFinished() {
  std::vector<std::thread> out;
  for (int64_t id : finished_) {
    auto it = threads_.find(id);
    out.push_back(std::move(it->second));
    threads_.erase(it);
  }
  finished_.clear();
  return out;
}

void CallThreads::Start(std::function<void()> body) {
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished = TakeFinished();
    const int64_t id = next_id_++;
    // Created under mu_: the body's last step (listing itself as finished)
    // waits until the thread is in threads_.
    threads_.emplace(id, std::thread([this, id, body = std::move(body)] {
                       body();
                       std::lock_guard<std::mutex> lock(mu_);
                       finished_.push_back(id);
                     }));
  }
  for (std::thread& t : finished) t.join();
}

void CallThreads::JoinAll() {
  while (true) {
    absl::flat_hash_map<int64_t, std::thread> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (threads_.empty()) return;
      all.swap(threads_);
    }
    for (auto& [id, thread] : all) thread.join();
    // Each joined body listed itself as finished before it returned.
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(finished_, [&](int64_t id) { return all.contains(id); });
  }
}

int64_t CallThreads::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(threads_.size());
}

}  // namespace conclave::loadtest
