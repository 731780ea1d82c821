// The HTTP calls in flight, so that shutdown can let them finish within its
// grace period and then cancel the rest (HttpServer::Shutdown), as
// grpc::Server::Shutdown does for gRPC calls.
// Thread-safe.
#ifndef CONCLAVE_SERVER_HTTP_ACTIVE_CALLS_H_
#define CONCLAVE_SERVER_HTTP_ACTIVE_CALLS_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "absl/time/time.h"

namespace conclave::server::http {

class ActiveCalls {
 public:
  // Holds one call's place; destroying it ends the call's registration.
  class Registration {
   public:
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    friend class ActiveCalls;
    Registration(ActiveCalls& calls, int64_t id) : calls_(calls), id_(id) {}
    ActiveCalls& calls_;
    const int64_t id_;
  };

  ActiveCalls() = default;
  ActiveCalls(const ActiveCalls&) = delete;
  ActiveCalls& operator=(const ActiveCalls&) = delete;

  // Registers a call until the returned registration is destroyed (which
  // must happen before the ActiveCalls is). `cancel` makes the call end
  // soon; CancelAll calls it at most once, from its own thread, under this
  // object's lock (so it must not register or unregister calls).
  std::unique_ptr<Registration> Add(std::function<void()> cancel);

  // Waits until no call is registered, or until `deadline`; whether none is.
  bool WaitIdle(absl::Time deadline);

  // Cancels every registered call not cancelled yet.
  void CancelAll();

  int size() const;

 private:
  struct Call {
    std::function<void()> cancel;
    bool cancelled = false;
  };
  void Remove(int64_t id);

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable idle_;
  std::map<int64_t, Call> calls_;
  int64_t next_id_ = 0;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_ACTIVE_CALLS_H_
