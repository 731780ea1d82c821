#include "orchestrator/aggregate/verifier_score.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace conclave::orchestrator {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::vector<int32_t> SingleTokenIds(const engine::Tokenizer& tokenizer,
                                    std::initializer_list<std::string_view> variants) {
  std::vector<int32_t> ids;
  for (std::string_view text : variants) {
    const std::vector<int32_t> encoded =
        tokenizer.Encode(text, /*add_special=*/false, /*parse_special=*/false);
    if (encoded.size() == 1 && !Contains(ids, encoded[0])) ids.push_back(encoded[0]);
  }
  return ids;
}

}  // namespace

double VerifierYesProbability(absl::Span<const engine::TokenLogprob> top,
                              const std::vector<int32_t>& yes_ids,
                              const std::vector<int32_t>& no_ids) {
  struct Match {
    bool yes;
    double logprob;
  };
  std::vector<Match> matches;
  absl::flat_hash_set<int32_t> seen;
  double max_logprob = -std::numeric_limits<double>::infinity();
  for (const engine::TokenLogprob& entry : top) {
    const bool yes = Contains(yes_ids, entry.token);
    if (!yes && !Contains(no_ids, entry.token)) continue;
    if (!std::isfinite(entry.logprob)) continue;
    if (!seen.insert(entry.token).second) continue;
    matches.push_back(Match{yes, entry.logprob});
    max_logprob = std::max(max_logprob, static_cast<double>(entry.logprob));
  }
  if (matches.empty() || !std::isfinite(max_logprob)) return 0.5;
  double p_yes = 0.0, p_no = 0.0;
  for (const Match& m : matches) {
    (m.yes ? p_yes : p_no) += std::exp(m.logprob - max_logprob);
  }
  return p_yes / (p_yes + p_no);  // the largest term is exp(0) = 1
}

YesNoTokens YesNoTokenIds(const engine::Tokenizer& tokenizer) {
  YesNoTokens tokens;
  tokens.yes = SingleTokenIds(tokenizer, {"Yes", " Yes", "yes", " yes", "YES"});
  tokens.no = SingleTokenIds(tokenizer, {"No", " No", "no", " no", "NO"});
  return tokens;
}

}  // namespace conclave::orchestrator
