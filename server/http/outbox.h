// The hand-off between the request thread that runs a call's job (the
// producer) and the HTTP worker thread that answers the call (the writer),
// as StreamingReactor's outbox is for gRPC: the job appends output and
// never waits on the client; while the writer is busy, new output may be
// merged into the last queued item, so a slow client gets fewer, larger
// events and never slows the engine down. The producer ends with Close
// and the call's status; a writer whose client went away calls Abandon, and
// later output is dropped.
// Thread-safe.
#ifndef CONCLAVE_SERVER_HTTP_OUTBOX_H_
#define CONCLAVE_SERVER_HTTP_OUTBOX_H_

#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>

#include "absl/status/status.h"

namespace conclave::server::http {

template <typename Item>
class Outbox {
 public:
  // Producer: `fn(items)` appends items to the deque or extends its last
  // one (which the writer has not taken yet). Dropped after Abandon.
  template <typename Fn>
  void Emit(Fn&& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (abandoned_ || closed_) return;
      fn(items_);
    }
    ready_.notify_all();
  }

  // Producer: nothing more will come; `status` is the call's outcome as the
  // client gets it (OK, or the error). What the producer wrote before Close
  // is visible to a writer that has seen closed().
  void Close(absl::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      status_ = std::move(status);
    }
    ready_.notify_all();
  }

  // Writer: waits until an item is queued or the producer has closed;
  // whether any item is queued.
  bool WaitForOutput() {
    std::unique_lock<std::mutex> lock(mu_);
    ready_.wait(lock, [this] { return !items_.empty() || closed_; });
    return !items_.empty();
  }

  // Writer: waits like WaitForOutput, then moves every queued item into
  // `out` (cleared first). False once the producer has closed and every
  // item has been taken.
  bool Take(std::deque<Item>& out) {
    out.clear();
    std::unique_lock<std::mutex> lock(mu_);
    ready_.wait(lock, [this] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    out.swap(items_);
    return true;
  }

  // Writer: nobody will read any more (the client went away); queued and
  // later output is dropped.
  void Abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    abandoned_ = true;
    items_.clear();
  }

  // After Close (else OK).
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;  // guards everything below
  std::condition_variable ready_;
  std::deque<Item> items_;  // not yet taken by the writer
  bool closed_ = false;
  bool abandoned_ = false;
  absl::Status status_;  // when closed_
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_OUTBOX_H_
