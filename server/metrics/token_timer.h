// When one request's tokens reach the server: the first ends its time to
// first token, each later one closes an inter-token gap. Tokens that arrive
// together (the engine's stream merges what its reader has not taken yet)
// share the time since the previous arrival evenly, so every token but the
// first still counts one gap. Tokens merged into the first arrival add no
// gap: when they were generated is unknown.
// Not thread-safe: one per request, used by the thread that reads its stream.
#ifndef CONCLAVE_SERVER_METRICS_TOKEN_TIMER_H_
#define CONCLAVE_SERVER_METRICS_TOKEN_TIMER_H_

#include <optional>

#include "absl/time/time.h"

namespace conclave::server {

class TokenTimer {
 public:
  struct Arrival {
    std::optional<absl::Duration> time_to_first_token;  // on the first arrival only
    int gaps = 0;                                       // inter-token gaps it closes
    absl::Duration gap = absl::ZeroDuration();          // the length of each
  };

  // `start`: when the call began.
  explicit TokenTimer(absl::Time start) : last_(start) {}

  // `count` tokens arrived at `now` (count 0: nothing arrived, nothing to
  // observe).
  Arrival OnTokens(int count, absl::Time now);

 private:
  absl::Time last_;  // the call's start, then the latest arrival
  bool seen_first_ = false;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_METRICS_TOKEN_TIMER_H_
