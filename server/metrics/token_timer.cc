#include "server/metrics/token_timer.h"

namespace conclave::server {

TokenTimer::Arrival TokenTimer::OnTokens(int count, absl::Time now) {
  Arrival a;
  if (count <= 0) return a;
  if (!seen_first_) {
    seen_first_ = true;
    a.time_to_first_token = now - last_;
  } else {
    a.gaps = count;
    a.gap = (now - last_) / count;
  }
  last_ = now;
  return a;
}

}  // namespace conclave::server
