// The write side of a server-streaming call whose work runs on a request
// thread (Generate, Contemplate). Subclasses start their work with
// StartWork, add output with Emit and end with Complete; this class owns
// the gRPC stream discipline:
//   * The work's thread appends output to an outbox under mu_. A gRPC
//     stream allows one outstanding write, so while a write is in flight
//     Emit may merge new output into the last queued message: a slow client
//     gets fewer, larger messages and never slows the engine down.
//   * OnWriteDone (a gRPC thread) starts the next write.
//   * OnCancel (client cancellation, deadline, server shutdown) and a
//     failed write call CancelWork, outside mu_, which must make the work
//     return soon (abort its engine requests).
//   * Finish is called exactly once, after the work has completed and no
//     write is in flight, so a finished call never has work still running.
// Lifetime: the reactor deletes itself when both gRPC (OnDone) and the
// work's thread are done with it.
#ifndef CONCLAVE_SERVER_STREAMING_REACTOR_H_
#define CONCLAVE_SERVER_STREAMING_REACTOR_H_

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"
#include "server/request_threads.h"
#include "server/status_map.h"

namespace conclave::server {

template <typename Response>
class StreamingReactor : public grpc::ServerWriteReactor<Response> {
 public:
  void OnWriteDone(bool ok) override {
    bool cancel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok && !cancelled_) {  // the stream broke: nobody is reading any more
        cancelled_ = true;
        cancel = true;
      }
      PumpLocked();
    }
    if (cancel) CancelWork();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      outbox_.clear();
    }
    // Outside mu_: the work may be inside Emit, waiting for it.
    CancelWork();
    std::lock_guard<std::mutex> lock(mu_);
    PumpLocked();
  }

  void OnDone() override { Unref(); }

 protected:
  StreamingReactor() = default;
  ~StreamingReactor() override = default;

  // Makes the running work return soon. Called at most once per reason,
  // from a gRPC thread, outside mu_; may run before StartWork's work starts.
  virtual void CancelWork() = 0;

  // Ends the call at once with `status` (a request that failed validation;
  // no work runs).
  void FinishNow(const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    finish_called_ = true;
    this->Finish(ToGrpcStatus(status));
  }

  // Runs `work` on a request thread; it must end by calling Complete. On
  // error (too many requests, shutting down) the call ends with that status
  // and `work` never runs.
  absl::Status StartWork(RequestThreads& threads, std::function<void()> work) {
    refs_.store(2);
    absl::Status s = threads.Run([this, work = std::move(work)] {
      work();
      Unref();
    });
    if (!s.ok()) {
      refs_.store(1);
      FinishNow(s);
    }
    return s;
  }

  // Adds output: `fn(outbox)` appends messages to the deque or extends its
  // last one (which has not been handed to gRPC yet). Dropped once the call
  // is cancelled.
  template <typename Fn>
  void Emit(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;  // nobody will read it
    fn(outbox_);
    PumpLocked();
  }

  // The work is done: `last` (when set and `status` is OK) is the final
  // message, then the call finishes with `status`.
  void Complete(const grpc::Status& status, std::optional<Response> last) {
    std::lock_guard<std::mutex> lock(mu_);
    if (status.ok() && last.has_value()) outbox_.push_back(*std::move(last));
    final_status_ = status;
    work_done_ = true;
    PumpLocked();
  }

  // Whether the client cancelled, its deadline passed or the server is
  // shutting down.
  bool cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

 private:
  // Starts the next write, or Finish once everything is written. Needs mu_.
  void PumpLocked() {
    if (finish_called_ || writing_) return;
    if (cancelled_) {
      // Nothing more reaches the client; finish once the work has returned.
      if (work_done_) {
        finish_called_ = true;
        this->Finish(final_status_.ok() ? grpc::Status::CANCELLED : final_status_);
      }
      return;
    }
    if (!outbox_.empty()) {
      in_flight_ = std::move(outbox_.front());
      outbox_.pop_front();
      writing_ = true;
      if (outbox_.empty() && work_done_) {
        finish_called_ = true;
        this->StartWriteAndFinish(&in_flight_, grpc::WriteOptions(), final_status_);
      } else {
        this->StartWrite(&in_flight_);
      }
      return;
    }
    if (work_done_) {
      finish_called_ = true;
      this->Finish(final_status_);
    }
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Held by gRPC until OnDone and by the work's thread until it returns.
  std::atomic<int> refs_{1};

  std::mutex mu_;  // guards everything below
  std::deque<Response> outbox_;  // not yet handed to gRPC
  Response in_flight_;           // the message gRPC is writing
  bool writing_ = false;
  bool cancelled_ = false;
  bool work_done_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;  // when work_done_
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_STREAMING_REACTOR_H_
