#include "engine/sampling/confidence_window.h"

#include <algorithm>

#include "kernels/check.h"

namespace conclave::engine {

ConfidenceWindow::ConfidenceWindow(int window) {
  CHECK_GE(window, 1) << "confidence window";
  values_.assign(window, 0.0f);
}

void ConfidenceWindow::Add(float confidence) {
  const double leaving = full() ? values_[next_] : 0.0;
  values_[next_] = confidence;
  sum_ += static_cast<double>(confidence) - leaving;
  ++count_;
  if (++next_ == values_.size()) {
    next_ = 0;
    sum_ = 0.0;
    for (const float v : values_) sum_ += v;
  }
  if (full()) lowest_ = std::min(lowest_, sum_ / static_cast<double>(values_.size()));
}

float ConfidenceWindow::mean() const {
  if (count_ == 0) return 0.0f;
  const int n = std::min(count_, static_cast<int>(values_.size()));
  return static_cast<float>(sum_ / static_cast<double>(n));
}

float ConfidenceWindow::lowest_mean() const {
  return full() ? static_cast<float>(lowest_) : mean();
}

}  // namespace conclave::engine
