// What the load generator asks: which API mode each request uses (a
// weighted mix of Instant, Thinking and Contemplating) and which question
// it carries (a JSONL prompt file or a small built-in set), drawn from a
// seeded generator so that a run can be repeated exactly.
// Not thread-safe: one dispatcher owns a Workload.
#ifndef CONCLAVE_LOADTEST_LOAD_WORKLOAD_H_
#define CONCLAVE_LOADTEST_LOAD_WORKLOAD_H_

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace conclave::loadtest {

enum class Mode { kInstant, kThinking, kContemplate };
inline constexpr int kNumModes = 3;
inline constexpr std::array<Mode, kNumModes> kModes = {Mode::kInstant, Mode::kThinking,
                                                       Mode::kContemplate};
// "instant", "thinking", "contemplate" (the names --mix takes).
const char* ModeName(Mode mode);

// Weights of the modes, normalized to sum to 1.
struct Mix {
  std::array<double, kNumModes> weight = {1, 0, 0};  // indexed by Mode
  double of(Mode m) const { return weight[static_cast<int>(m)]; }
};

// Parses "instant=0.5,thinking=0.2,contemplate=0.3": comma-separated
// NAME=WEIGHT, each mode at most once, weights finite and >= 0, at least one
// positive; modes left out weigh 0. INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<Mix> ParseMix(absl::string_view text);

// The mix as it parses ("instant=0.5,thinking=0.2,contemplate=0.3"), modes
// of weight 0 left out.
std::string MixToString(const Mix& mix);

// Reads a JSONL file of {"question": "..."} objects (other keys ignored,
// blank lines skipped). INVALID_ARGUMENT naming the file and line for a
// line that is not such an object; NOT_FOUND when the file cannot be read;
// INVALID_ARGUMENT when it holds no question.
absl::StatusOr<std::vector<std::string>> LoadPrompts(const std::string& path);

// A few short questions with short answers (arithmetic, facts), for runs
// without --prompts.
const std::vector<std::string>& BuiltinPrompts();

// One request to send.
struct WorkItem {
  Mode mode = Mode::kInstant;
  int prompt = 0;     // index into the prompt set
  uint64_t seed = 0;  // the request's sampling seed
};

class Workload {
 public:
  // `prompts` non-empty.
  Workload(Mix mix, std::vector<std::string> prompts, uint64_t seed);

  // The next request: a mode drawn by weight, a prompt drawn uniformly, a
  // fresh sampling seed.
  WorkItem Next();

  const std::string& prompt(int i) const { return prompts_[static_cast<size_t>(i)]; }
  int num_prompts() const { return static_cast<int>(prompts_.size()); }

 private:
  const Mix mix_;
  const std::vector<std::string> prompts_;
  std::mt19937_64 rng_;
};

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_WORKLOAD_H_
