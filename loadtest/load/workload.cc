#include "loadtest/load/workload.h"

#include <cmath>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kernels/check.h"
#include "nlohmann/json.hpp"

namespace conclave::loadtest {
namespace {

// A uniform double in [0, 1) from the top 53 bits, the same on every
// platform.
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kInstant: return "instant";
    case Mode::kThinking: return "thinking";
    case Mode::kContemplate: return "contemplate";
  }
  return "unknown";
}

absl::StatusOr<Mix> ParseMix(absl::string_view text) {
  Mix mix;
  mix.weight = {0, 0, 0};
  std::array<bool, kNumModes> seen = {false, false, false};
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, '=');
    const absl::string_view name = absl::StripAsciiWhitespace(kv.first);
    const absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    if (part.empty() || part.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix: \"", part, "\" is not NAME=WEIGHT (e.g. instant=0.5,contemplate=0.5)"));
    }
    int index = -1;
    for (Mode m : kModes) {
      if (name == ModeName(m)) index = static_cast<int>(m);
    }
    if (index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix: unknown mode \"", name, "\"; the modes are instant, thinking, contemplate"));
    }
    if (seen[index]) {
      return absl::InvalidArgumentError(absl::StrCat("--mix: ", name, " is given twice"));
    }
    seen[index] = true;
    double weight = 0;
    if (!absl::SimpleAtod(value, &weight) || !std::isfinite(weight) || weight < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--mix: the weight of ", name, " is \"", value,
                                                     "\"; it must be a number >= 0"));
    }
    mix.weight[index] = weight;
  }
  const double total = mix.weight[0] + mix.weight[1] + mix.weight[2];
  if (!(total > 0)) {
    return absl::InvalidArgumentError("--mix: at least one mode needs a weight above 0");
  }
  for (double& w : mix.weight) w /= total;
  return mix;
}

std::string MixToString(const Mix& mix) {
  std::vector<std::string> parts;
  for (Mode m : kModes) {
    if (mix.of(m) > 0) parts.push_back(absl::StrCat(ModeName(m), "=", mix.of(m)));
  }
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<std::vector<std::string>> LoadPrompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompts: cannot read ", path));
  std::vector<std::string> prompts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("question") || !j["question"].is_string() ||
        j["question"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompts: ", path, " line ", number,
                       " is not a JSON object with a non-empty string \"question\""));
    }
    prompts.push_back(j["question"].get<std::string>());
  }
  if (prompts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--prompts: ", path, " holds no question"));
  }
  return prompts;
}

const std::vector<std::string>& BuiltinPrompts() {
  static const std::vector<std::string>* const kPrompts = new std::vector<std::string>{
      "What is 7 + 5?",
      "Tom has 3 apples and buys 4 more. How many apples does he have?",
      "What is the capital of France?",
      "A train travels 60 km in one hour. How far does it travel in 3 hours?",
      "What is 12 times 3?",
      "Name the largest planet in the solar system.",
      "Sara had 10 pencils and gave away 4. How many pencils does she have left?",
      "What is half of 18?",
  };
  return *kPrompts;
}

Workload::Workload(Mix mix, std::vector<std::string> prompts, uint64_t seed)
    : mix_(mix), prompts_(std::move(prompts)), rng_(seed) {
  CHECK(!prompts_.empty()) << "a workload needs prompts";
}

WorkItem Workload::Next() {
  WorkItem item;
  const double u = Uniform(rng_);
  double cumulative = 0;
  item.mode = Mode::kContemplate;
  // The last mode of positive weight takes what rounding leaves at the top.
  for (Mode m : kModes) {
    if (mix_.of(m) <= 0) continue;
    item.mode = m;
    cumulative += mix_.of(m);
    if (u < cumulative) break;
  }
  item.prompt = static_cast<int>(Uniform(rng_) * static_cast<double>(prompts_.size()));
  item.seed = rng_();
  return item;
}

}  // namespace conclave::loadtest
