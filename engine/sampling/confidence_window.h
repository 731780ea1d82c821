// Sliding-window mean of per-token confidences, for DeepConf's "group
// confidence" (the mean token confidence over the last `window` tokens) and
// its "lowest group confidence" (the minimum of that mean over a trace),
// which the engine compares with a threshold to stop weak traces early.
// O(1) amortized per Add. Not thread-safe: one per sequence.
#ifndef CONCLAVE_ENGINE_SAMPLING_CONFIDENCE_WINDOW_H_
#define CONCLAVE_ENGINE_SAMPLING_CONFIDENCE_WINDOW_H_

#include <cstddef>
#include <limits>
#include <vector>

namespace conclave::engine {

class ConfidenceWindow {
 public:
  // window >= 1 (CHECKed): how many of the latest values mean() averages.
  explicit ConfidenceWindow(int window);

  void Add(float confidence);

  // Mean of the last min(count(), window) values; 0 before the first Add.
  float mean() const;
  // Values added in total.
  int count() const { return count_; }
  // Lowest mean() seen after an Add that left the window full. While the
  // window has never been full: the running mean of everything so far (a
  // trace shorter than the window is one group). 0 before the first Add.
  float lowest_mean() const;
  // True once `window` values have been added.
  bool full() const { return count_ >= static_cast<int>(values_.size()); }
  int window() const { return static_cast<int>(values_.size()); }

 private:
  std::vector<float> values_;  // ring buffer, [window]
  size_t next_ = 0;            // slot the next value overwrites
  int count_ = 0;
  // Sum of the values in the ring. Adding and subtracting in double drifts
  // only by rounding; it is recomputed from the ring every time the ring
  // wraps, which keeps the error bounded and the cost O(1) amortized.
  double sum_ = 0.0;
  double lowest_ = std::numeric_limits<double>::infinity();
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SAMPLING_CONFIDENCE_WINDOW_H_
