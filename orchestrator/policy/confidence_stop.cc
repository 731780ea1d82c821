#include "orchestrator/policy/confidence_stop.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/check.h"

namespace conclave::orchestrator {

double Percentile(std::vector<double> values, double p) {
  CHECK(!values.empty()) << "Percentile of no values";
  CHECK(p >= 0.0 && p <= 100.0) << "percentile p=" << p;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(low);
  return values[low] + fraction * (values[high] - values[low]);
}

absl::StatusOr<ConfidenceStop> ConfidenceStop::Create(const ConfidenceStopOptions& options) {
  if (options.warmup < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("confidence warmup=%d must be >= 1", options.warmup));
  }
  if (!(options.keep_top_percent > 0.0 && options.keep_top_percent <= 100.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "confidence keep_top_percent=%g must be in (0, 100]", options.keep_top_percent));
  }
  if (options.min_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("confidence min_tokens=%d must be >= 0", options.min_tokens));
  }
  return ConfidenceStop(options);
}

void ConfidenceStop::OnAgentFinished(int agent, double lowest_window_confidence) {
  CHECK(std::isfinite(lowest_window_confidence))
      << "agent " << agent << " lowest window confidence " << lowest_window_confidence;
  if (calibrated_ || !seen_.insert(agent).second) return;
  warmup_values_.push_back(lowest_window_confidence);
  if (static_cast<int>(warmup_values_.size()) == options_.warmup) {
    threshold_ = Percentile(warmup_values_, 100.0 - options_.keep_top_percent);
    calibrated_ = true;
  }
}

bool ConfidenceStop::ShouldAbort(double window_confidence, int tokens_generated) const {
  return calibrated_ && tokens_generated >= options_.min_tokens &&
         window_confidence < threshold_;
}

}  // namespace conclave::orchestrator
