// Verifier scoring: the probability a verifier pass (VerifierMessages) gives
// to "Yes", read from the top logprobs of its first generated token, as in
// generative verifiers that score P("Yes") of the next token.
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_AGGREGATE_VERIFIER_SCORE_H_
#define CONCLAVE_ORCHESTRATOR_AGGREGATE_VERIFIER_SCORE_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace conclave::orchestrator {

// p_yes / (p_yes + p_no), where p_yes sums exp(logprob) over the entries of
// `top` whose token is in `yes_ids` (each distinct token once, its first
// entry), and p_no likewise over `no_ids` (an id listed in both counts as
// yes). Computed relative to the largest matching logprob, so very negative
// logprobs do not underflow to 0/0. Non-finite logprobs are skipped. 0.5
// when no entry of `top` matches.
// `top` is TokenOutput::top (SamplingParams::logprobs alternatives); ask for
// enough of them (e.g. 20) that both answers usually appear.
double VerifierYesProbability(absl::Span<const engine::TokenLogprob> top,
                              const std::vector<int32_t>& yes_ids,
                              const std::vector<int32_t>& no_ids);

struct YesNoTokens {
  std::vector<int32_t> yes;  // distinct ids, in the order of the variants below
  std::vector<int32_t> no;
};

// The ids of "Yes", " Yes", "yes", " yes", "YES" (and the same for "No") that
// `tokenizer` encodes as a single token (add_special = false, parse_special =
// false); variants that take several tokens are left out.
YesNoTokens YesNoTokenIds(const engine::Tokenizer& tokenizer);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_AGGREGATE_VERIFIER_SCORE_H_
