// The threads that do each request's blocking work (rendering, submitting,
// reading engine streams), so that no gRPC callback thread ever waits on the
// engine. One thread per running request: a request spends its life blocked
// on its RequestStream, and the engine batches many requests at once, so a
// small fixed pool would cap the batch. `max_threads` bounds them instead.
// Thread-safe.
#ifndef CONCLAVE_SERVER_REQUEST_THREADS_H_
#define CONCLAVE_SERVER_REQUEST_THREADS_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace conclave::server {

class RequestThreads {
 public:
  explicit RequestThreads(int max_threads);
  ~RequestThreads();  // Close()
  RequestThreads(const RequestThreads&) = delete;
  RequestThreads& operator=(const RequestThreads&) = delete;

  // Runs `work` on a new thread. RESOURCE_EXHAUSTED when max_threads are
  // running, UNAVAILABLE after Close; `work` is not run then.
  absl::Status Run(std::function<void()> work);

  // Refuses new work, then waits for every running thread and joins it.
  // Idempotent.
  void Close();

  int running() const;

 private:
  // Joins the threads that have finished (outside mu_).
  void Reap();

  const int max_threads_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable idle_;
  bool closed_ = false;
  int64_t next_id_ = 0;
  std::map<int64_t, std::thread> threads_;  // started, not yet joined
  std::vector<int64_t> finished_;           // ids whose work has returned
  int running_ = 0;                         // threads whose work has not returned
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_REQUEST_THREADS_H_
