// Fuzzes Generate request validation: the input as a conclave.v1.
// GenerateRequest (wire format, then JSON) goes through
// ValidateGenerateRequest under each of FuzzLimits(), which must return a
// status. A request it accepts must be one the layers below accept too:
//   - its sampling parameters pass the engine's ValidateSamplingParams (a
//     Sampler is built from them: its constructor CHECKs that) and its stop
//     strings pass ValidateStopStrings (StopChecker CHECKs that);
//   - exactly one of raw_prompt and messages is given; max_tokens and
//     thinking_budget are within the limits;
//   - ResolveTokenBudget, for prompts of several lengths, returns a status,
//     and a budget it returns fits the context: prompt + max_tokens (+ the
//     thinking reserve) <= context_length, max_tokens >= 1 (>= 2 in
//     thinking mode) and <= max_tokens_limit, thinking_budget in
//     [1, max_tokens - 1] in thinking mode, requested values kept.
// Seeds: corpus/generate_request_fuzz/ (fuzz/make_corpus.py); dictionary:
// request_fuzz.dict.
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "conclave/v1/conclave.pb.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/stop_checker.h"
#include "fuzz/request_fuzz_util.h"
#include "server/validation.h"

namespace {

using conclave::fuzz::Fail;
using conclave::server::GenerateMode;
using conclave::server::GeneratePlan;
using conclave::server::RequestLimits;
using conclave::server::TokenBudget;

constexpr char kTarget[] = "generate_request_fuzz";

void CheckBudget(const GeneratePlan& plan, int prompt_tokens, const RequestLimits& limits) {
  absl::StatusOr<TokenBudget> budget =
      conclave::server::ResolveTokenBudget(plan, prompt_tokens, limits);
  if (!budget.ok()) return;
  const bool thinking = plan.mode == GenerateMode::kThinking;
  const int reserve = thinking ? conclave::server::kThinkingReserveTokens : 0;
  const std::string where = absl::StrCat("prompt_tokens=", prompt_tokens, " max_tokens=",
                                         budget->max_tokens, " thinking_budget=",
                                         budget->thinking_budget, " context=",
                                         limits.context_length);
  if (budget->max_tokens < (thinking ? 2 : 1) || budget->max_tokens > limits.max_tokens_limit) {
    Fail(kTarget, "resolved max_tokens out of range: " + where);
  }
  if (static_cast<int64_t>(prompt_tokens) + budget->max_tokens + reserve > limits.context_length) {
    Fail(kTarget, "resolved budget does not fit the context: " + where);
  }
  if (plan.max_tokens.has_value() && *plan.max_tokens != budget->max_tokens) {
    Fail(kTarget, "requested max_tokens not kept: " + where);
  }
  if (thinking) {
    if (budget->thinking_budget < 1 || budget->thinking_budget > budget->max_tokens - 1) {
      Fail(kTarget, "resolved thinking_budget out of range: " + where);
    }
    if (plan.thinking_budget.has_value() && *plan.thinking_budget != budget->thinking_budget) {
      Fail(kTarget, "requested thinking_budget not kept: " + where);
    }
  } else if (budget->thinking_budget != 0) {
    Fail(kTarget, "instant mode got a thinking budget: " + where);
  }
}

void Check(const conclave::v1::GenerateRequest& request, const RequestLimits& limits) {
  absl::StatusOr<GeneratePlan> plan = conclave::server::ValidateGenerateRequest(request, limits);
  if (!plan.ok()) {
    if (plan.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail(kTarget, absl::StrCat("refused with ", plan.status().ToString(),
                                 ", not INVALID_ARGUMENT"));
    }
    return;
  }
  conclave::engine::Sampler sampler(plan->sampling);  // CHECKs the engine's validation
  if (absl::Status s = conclave::engine::ValidateStopStrings(plan->stop); !s.ok()) {
    Fail(kTarget, absl::StrCat("accepted stop strings the engine rejects: ", s.message()));
  }
  if (plan->raw_prompt.has_value() == !plan->messages.empty()) {
    Fail(kTarget, "a plan needs exactly one of raw_prompt and messages");
  }
  if (plan->max_tokens.has_value() &&
      (*plan->max_tokens < 1 || *plan->max_tokens > limits.max_tokens_limit)) {
    Fail(kTarget, "accepted max_tokens outside [1, max_tokens_limit]");
  }
  for (int prompt_tokens : {0, 1, limits.context_length / 2, limits.max_prompt_tokens,
                            limits.context_length - 1, limits.context_length}) {
    CheckBudget(*plan, prompt_tokens, limits);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  conclave::fuzz::ForEachParsedRequest<conclave::v1::GenerateRequest>(
      data, size, [](const conclave::v1::GenerateRequest& request) {
        for (const RequestLimits& limits : conclave::fuzz::FuzzLimits()) Check(request, limits);
      });
  return 0;
}
