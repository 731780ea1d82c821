// The threads of the load generator's blocking calls (cpp-httplib's client
// blocks, so each HTTP call runs on a thread of its own): every thread is
// joined here, none is detached. A thread that has finished is joined when
// the next one starts (so a long open-loop run does not pile them up);
// JoinAll, which the destructor calls, waits for the rest.
//
// A body may destroy the object that started it (a call's `done` does), but
// not this one: the owner destroys it, from a thread it did not start, after
// every body has been told to end.
// Thread-safe.
#ifndef CONCLAVE_LOADTEST_LOAD_CALL_THREADS_H_
#define CONCLAVE_LOADTEST_LOAD_CALL_THREADS_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace conclave::loadtest {

class CallThreads {
 public:
  CallThreads() = default;
  CallThreads(const CallThreads&) = delete;
  CallThreads& operator=(const CallThreads&) = delete;
  ~CallThreads() { JoinAll(); }

  // Runs `body` on a new thread, after joining the threads that have
  // finished.
  void Start(std::function<void()> body);

  // Blocks until every body has returned, and joins every thread.
  void JoinAll();

  // Threads started and not yet joined (finished or not).
  int64_t size() const;

 private:
  // Takes the threads listed in finished_ out of threads_.
  std::vector<std::thread> TakeFinished();

  mutable std::mutex mu_;  // guards everything below
  int64_t next_id_ = 0;
  absl::flat_hash_map<int64_t, std::thread> threads_;
  std::vector<int64_t> finished_;  // ids whose body has returned
};

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_CALL_THREADS_H_
