#include "engine/request_stream.h"

#include <utility>

namespace conclave::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStopToken: return "stop";
    case FinishReason::kStopString: return "stop_string";
    case FinishReason::kLength: return "length";
    case FinishReason::kAborted: return "aborted";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

RequestStream::Poll RequestStream::Next(RequestUpdate& out, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ended_) return Poll::kEnd;
  auto ready = [&] { return has_pending_; };
  if (timeout == absl::InfiniteDuration()) {
    cv_.wait(lock, ready);
  } else if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), ready)) {
    return Poll::kTimeout;
  }
  out = std::move(pending_);
  pending_ = RequestUpdate{};
  has_pending_ = false;
  if (out.done) ended_ = true;
  return Poll::kUpdate;
}

void RequestStream::Push(SequenceDelta delta, const RequestUsage& usage) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    pending_.deltas.push_back(std::move(delta));
    pending_.usage = usage;
    has_pending_ = true;
  }
  cv_.notify_all();
}

void RequestStream::Close(absl::Status status, const RequestUsage& usage) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    pending_.done = true;
    pending_.status = std::move(status);
    pending_.usage = usage;
    has_pending_ = true;
  }
  cv_.notify_all();
}

}  // namespace conclave::engine
