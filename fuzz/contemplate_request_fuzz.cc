// Fuzzes Contemplate request validation and conversion: the input as a
// conclave.v1.ContemplateRequest (wire format, then JSON, then a POST
// /v1/contemplations body through ParseContemplationRequest, which must
// return a request or INVALID_ARGUMENT) goes through
// ValidateContemplateRequest under each of FuzzLimits(), which must return
// a status (INVALID_ARGUMENT when it refuses). A request it accepts goes
// through ToContemplateOptions, the server's own conversion, which must
// succeed, give the values conclave.proto documents (checked against the
// proto's text, not the server's constants):
//   - agents: the request's, or 4 lowered to max_agents; in [1, max_agents];
//   - max_tokens: the request's, or 1024 lowered to max_tokens_limit; in
//     [2, max_tokens_limit]; thinking_budget: the request's, in
//     [1, max_tokens - 1], or three quarters of max_tokens;
//   - temperature 0.8 and spread 0 when absent, the spread narrowed to
//     2 * temperature; confidence_eta 90 when absent;
//   - consensus (when enabled): min_finished half the agents rounded up,
//     vote_share 0.75; confidence: warmup a quarter of the agents (at least
//     1), keep_top_percent 90, window max_tokens / 8 in [16, 2048];
// and options the orchestrator runs: ValidateContemplateOptions, the
// stopping policies' Create, and an agent plan (BuildAgentPlan, as
// Contemplation plans it) whose every agent's sampling is valid.
// Seeds: corpus/contemplate_request_fuzz/ (fuzz/make_corpus.py); dictionary:
// request_fuzz.dict.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "conclave/v1/conclave.pb.h"
#include "engine/sampling/sampler.h"
#include "fuzz/request_fuzz_util.h"
#include "orchestrator/contemplate_options.h"
#include "orchestrator/plan/agent_plan.h"
#include "orchestrator/policy/confidence_stop.h"
#include "orchestrator/policy/consensus_stop.h"
#include "server/contemplate_options.h"
#include "server/http/contemplations.h"
#include "server/validation.h"

namespace {

using conclave::fuzz::Fail;
using conclave::orchestrator::ContemplateOptions;
using conclave::server::RequestLimits;
using conclave::v1::ContemplateRequest;

constexpr char kTarget[] = "contemplate_request_fuzz";
// conclave.proto: ContemplateRequest.agents "Default 4 (lowered to
// max_agents)", max_tokens "Default 1024".
constexpr int kDocumentedDefaultAgents = 4;
constexpr int kDocumentedDefaultMaxTokens = 1024;

void CheckStatus(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Fail(kTarget, absl::StrCat(what, ": ", s.message()));
}

// Checks `got` == `want`, naming the field.
template <typename T>
void CheckEq(const char* field, T got, T want, const std::string& values) {
  if (got != want) {
    Fail(kTarget, absl::StrCat(field, " is ", got, ", conclave.proto says ", want, values));
  }
}

void CheckAccepted(const ContemplateRequest& r, const RequestLimits& limits) {
  constexpr uint64_t kDrawnSeed = 12345;
  absl::StatusOr<ContemplateOptions> converted =
      conclave::server::ToContemplateOptions(r, limits, kDrawnSeed);
  CheckStatus(converted.status(), "ToContemplateOptions of an accepted request");
  const ContemplateOptions& o = *converted;
  const std::string values =
      absl::StrCat(" (agents=", o.agents, " max_tokens=", o.max_tokens, " thinking_budget=",
                   o.thinking_budget, " max_agents=", limits.max_agents,
                   " max_tokens_limit=", limits.max_tokens_limit, ")");

  // The documented defaults and ranges.
  CheckEq("agents", o.agents,
          r.has_agents() ? r.agents() : std::min(kDocumentedDefaultAgents, limits.max_agents),
          values);
  if (o.agents < 1 || o.agents > limits.max_agents) Fail(kTarget, "agents out of range" + values);
  CheckEq("max_tokens", o.max_tokens,
          r.has_max_tokens() ? r.max_tokens()
                             : std::min(kDocumentedDefaultMaxTokens, limits.max_tokens_limit),
          values);
  if (o.max_tokens < 2 || o.max_tokens > limits.max_tokens_limit) {
    Fail(kTarget, "max_tokens out of range" + values);
  }
  CheckEq("thinking_budget", o.thinking_budget,
          r.has_thinking_budget() ? r.thinking_budget() : o.max_tokens * 3 / 4, values);
  if (r.has_thinking_budget() && (o.thinking_budget < 1 || o.thinking_budget >= o.max_tokens)) {
    Fail(kTarget, "thinking_budget outside [1, max_tokens - 1]" + values);
  }
  const float temperature = r.has_temperature() ? r.temperature() : 0.8f;
  CheckEq("temperature", o.temperature, temperature, values);
  CheckEq("temperature_spread", o.temperature_spread,
          std::min(r.has_temperature_spread() ? r.temperature_spread() : 0.0f,
                   2.0f * temperature),
          values);
  CheckEq("seed", o.seed, r.has_seed() ? r.seed() : kDrawnSeed, values);
  CheckEq("confidence_eta", o.confidence_eta,
          static_cast<double>(r.has_confidence_eta() ? r.confidence_eta() : 90.0f), values);

  const conclave::v1::ConsensusStopping& consensus = r.stopping().consensus();
  if (consensus.enabled() != o.consensus.has_value()) Fail(kTarget, "consensus on/off" + values);
  if (o.consensus) {
    CheckEq("consensus.min_finished", o.consensus->min_finished,
            consensus.has_min_finished() ? consensus.min_finished() : (o.agents + 1) / 2, values);
    CheckEq("consensus.vote_share", o.consensus->threshold,
            static_cast<double>(consensus.has_vote_share() ? consensus.vote_share() : 0.75f),
            values);
    CheckStatus(conclave::orchestrator::ConsensusStop::Create(*o.consensus).status(),
                "ConsensusStop");
  }
  const conclave::v1::ConfidenceStopping& confidence = r.stopping().confidence();
  if (confidence.enabled() != o.confidence.has_value()) {
    Fail(kTarget, "confidence on/off" + values);
  }
  CheckEq("confidence.window", o.confidence_window,
          confidence.has_window() ? confidence.window() : std::clamp(o.max_tokens / 8, 16, 2048),
          values);
  if (o.confidence) {
    CheckEq("confidence.warmup_agents", o.confidence->warmup,
            confidence.has_warmup_agents() ? confidence.warmup_agents()
                                           : std::max(1, o.agents / 4),
            values);
    CheckEq("confidence.keep_top_percent", o.confidence->keep_top_percent,
            static_cast<double>(confidence.has_keep_top_percent() ? confidence.keep_top_percent()
                                                                  : 90.0f),
            values);
    CheckStatus(conclave::orchestrator::ConfidenceStop::Create(*o.confidence).status(),
                "ConfidenceStop");
  }

  // What the orchestrator will do with them.
  CheckStatus(conclave::orchestrator::ValidateContemplateOptions(o, limits.max_agents),
              "ValidateContemplateOptions");
  conclave::orchestrator::PlanOptions plan;
  plan.agents = o.agents;
  plan.base_temperature = o.temperature;
  plan.temperature_spread = o.temperature_spread;
  plan.seed = o.seed;
  plan.thinking_budget = o.thinking_budget;
  absl::StatusOr<std::vector<conclave::orchestrator::AgentSpec>> specs =
      conclave::orchestrator::BuildAgentPlan(plan, limits.max_agents);
  CheckStatus(specs.status(), "BuildAgentPlan");
  conclave::engine::SamplingParams sampling = o.sampling;
  for (const conclave::orchestrator::AgentSpec& spec : *specs) {
    sampling.temperature = spec.temperature;
    sampling.seed = spec.seed;
    CheckStatus(conclave::engine::ValidateSamplingParams(sampling),
                absl::StrCat("agent ", spec.index, " sampling"));
  }
}

void Check(const ContemplateRequest& request, const RequestLimits& limits) {
  if (absl::Status s = conclave::server::ValidateContemplateRequest(request, limits); !s.ok()) {
    if (s.code() != absl::StatusCode::kInvalidArgument) {
      Fail(kTarget, absl::StrCat("refused with ", s.ToString(), ", not INVALID_ARGUMENT"));
    }
    return;
  }
  CheckAccepted(request, limits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto check = [](const ContemplateRequest& request) {
    for (const RequestLimits& limits : conclave::fuzz::FuzzLimits()) Check(request, limits);
  };
  conclave::fuzz::ForEachParsedRequest<ContemplateRequest>(data, size, check);
  absl::StatusOr<conclave::server::http::ContemplationRequest> body =
      conclave::server::http::ParseContemplationRequest(
          absl::string_view(reinterpret_cast<const char*>(data), size));
  if (body.ok()) {
    check(body->request);
  } else if (body.status().code() != absl::StatusCode::kInvalidArgument) {
    Fail(kTarget, absl::StrCat("the HTTP body was refused with ", body.status().ToString()));
  }
  return 0;
}
