// DeepConf-online early abort (Fu et al. 2025, "Deep Think with Confidence",
// Algorithm 2), adapted to agents that all start together.
//
// Confidence here is the engine's: token confidence = -mean of the top-k
// logprobs (higher = more confident), averaged over a sliding window of the
// latest tokens (SequenceDelta::window_confidence); an agent's "lowest
// windowed confidence" is the minimum of that mean over its trace
// (engine::ConfidenceWindow::lowest_mean).
//
// 1. Warmup: the first `warmup` agents to FINISH (not aborted ones) report
//    their lowest windowed confidence. Until `warmup` of them have, nothing
//    is ever aborted.
// 2. Threshold: the (100 - keep_top_percent)-th percentile of those values,
//    linearly interpolated between order statistics (numpy.percentile's
//    default, as DeepConf's code): with sorted values v[0..n-1], rank
//    r = p/100 * (n-1), threshold = v[floor r] + (r - floor r) *
//    (v[floor r + 1] - v[floor r]). keep_top_percent = 90 (conservative)
//    gives the 10th percentile, 10 (aggressive) the 90th.
// 3. Then a still-running agent is aborted when its current windowed
//    confidence is strictly below the threshold, once it has generated at
//    least `min_tokens` tokens (e.g. the window size, so that the mean is
//    over a full window and not over a short, noisy prefix).
// Reports after the warmup do not move the threshold.
// Unlike DeepConf, where the warmup traces run before the others start, here
// the warmup agents are the earliest finishers, which tend to be the shorter
// traces; the threshold is only as good as that sample.
// Not thread-safe: one per request.
#ifndef CONCLAVE_ORCHESTRATOR_POLICY_CONFIDENCE_STOP_H_
#define CONCLAVE_ORCHESTRATOR_POLICY_CONFIDENCE_STOP_H_

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace conclave::orchestrator {

struct ConfidenceStopOptions {
  int warmup = 16;                 // >= 1: finished agents that set the threshold
  double keep_top_percent = 90.0;  // eta in (0, 100]: threshold = (100 - eta)-th percentile
  int min_tokens = 0;              // >= 0: tokens an agent generates before it may be aborted
};

class ConfidenceStop {
 public:
  // INVALID_ARGUMENT naming the field and its range when warmup < 1,
  // keep_top_percent is not in (0, 100] (NaN included) or min_tokens < 0.
  static absl::StatusOr<ConfidenceStop> Create(const ConfidenceStopOptions& options);

  // Records that `agent` finished with `lowest_window_confidence` (finite,
  // CHECKed). Counts toward the warmup while it is incomplete; a second report
  // for the same agent, and every report after the warmup, is ignored.
  void OnAgentFinished(int agent, double lowest_window_confidence);

  // True once `warmup` agents have reported.
  bool calibrated() const { return calibrated_; }
  // The abort threshold; meaningful only once calibrated() (0 before).
  double threshold() const { return threshold_; }
  // Agents that have reported toward the warmup so far (<= warmup).
  int warmup_reports() const { return static_cast<int>(warmup_values_.size()); }

  // Whether a running agent whose windowed confidence is now
  // `window_confidence`, after `tokens_generated` tokens, should be aborted:
  // calibrated() && tokens_generated >= min_tokens && window_confidence <
  // threshold(). NaN never aborts.
  bool ShouldAbort(double window_confidence, int tokens_generated) const;

  const ConfidenceStopOptions& options() const { return options_; }

 private:
  explicit ConfidenceStop(const ConfidenceStopOptions& options) : options_(options) {}

  ConfidenceStopOptions options_;
  absl::flat_hash_set<int> seen_;      // agents that reported during the warmup
  std::vector<double> warmup_values_;  // their lowest windowed confidences
  bool calibrated_ = false;
  double threshold_ = 0.0;
};

// The p-th percentile (p in [0, 100]) of `values` (non-empty; CHECKed) by
// linear interpolation between order statistics, as numpy.percentile's
// default ("linear", Hyndman & Fan type 7).
double Percentile(std::vector<double> values, double p);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_POLICY_CONFIDENCE_STOP_H_
