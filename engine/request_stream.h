// The channel from the engine's step loop to one request's consumer. The
// step loop only appends (never waits on the consumer); the consumer takes
// everything that has arrived in one call, so a slow reader gets fewer,
// larger updates instead of slowing the engine down.
// Thread-safe.
#ifndef CONCLAVE_ENGINE_REQUEST_STREAM_H_
#define CONCLAVE_ENGINE_REQUEST_STREAM_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "absl/time/time.h"
#include "engine/request.h"

namespace conclave::engine {

class RequestStream {
 public:
  enum class Poll { kUpdate, kTimeout, kEnd };

  RequestStream(int64_t id, std::function<void(int64_t)> abort)
      : id_(id), abort_(std::move(abort)) {}

  int64_t id() const { return id_; }

  // Waits up to `timeout` for output. kUpdate fills `out` with everything
  // since the last call (out.done on the final one); kEnd once the final
  // update has been taken.
  Poll Next(RequestUpdate& out, absl::Duration timeout = absl::InfiniteDuration());

  // Asks the engine to abort the request (idempotent; output that is
  // already queued stays readable, and a final update follows).
  void Cancel() { abort_(id_); }

  // Step-loop side.
  void Push(SequenceDelta delta, const RequestUsage& usage);
  void Close(absl::Status status, const RequestUsage& usage);

 private:
  const int64_t id_;
  const std::function<void(int64_t)> abort_;
  std::mutex mu_;
  std::condition_variable cv_;
  RequestUpdate pending_;  // guarded by mu_
  bool has_pending_ = false;  // guarded by mu_
  bool closed_ = false;       // guarded by mu_: Close was called
  bool ended_ = false;        // guarded by mu_: the final update was taken
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_REQUEST_STREAM_H_
