// Fuzzes Contemplate request validation: the input as a conclave.v1.
// ContemplateRequest (wire format, then JSON, then a POST /v1/contemplations
// body through ParseContemplationRequest, which must return a request or
// INVALID_ARGUMENT) goes through ValidateContemplateRequest under each of
// FuzzLimits(), which must return a status (INVALID_ARGUMENT when it
// refuses). What it accepts must be what
// conclave.proto documents and what the orchestrator accepts:
//   - agents (default 4, lowered to max_agents) in [1, max_agents];
//   - max_tokens (default 1024, lowered to max_tokens_limit) in
//     [2, max_tokens_limit], and thinking_budget in [1, max_tokens - 1];
//   - consensus and confidence stopping values the policies accept
//     (ConsensusStop::Create, ConfidenceStop::Create);
//   - an agent plan (BuildAgentPlan with the temperature spread narrowed to
//     2 * temperature, as the proto says) whose every agent temperature is a
//     valid sampling temperature.
// ToContemplateOptions itself is not linked here: it lives with the gRPC
// job (server/contemplate_job.cc), which needs the whole server.
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
#include "orchestrator/plan/agent_plan.h"
#include "orchestrator/policy/confidence_stop.h"
#include "orchestrator/policy/consensus_stop.h"
#include "server/http/contemplations.h"
#include "server/validation.h"

namespace {

using conclave::fuzz::Fail;
using conclave::server::RequestLimits;
using conclave::v1::ContemplateRequest;

constexpr char kTarget[] = "contemplate_request_fuzz";
// conclave.proto: ContemplateRequest.max_tokens "Default 1024".
constexpr int kDocumentedDefaultMaxTokens = 1024;

void CheckStatus(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Fail(kTarget, absl::StrCat(what, ": ", s.message()));
}

void CheckAccepted(const ContemplateRequest& r, const RequestLimits& limits) {
  const int agents = r.has_agents() ? r.agents()
                                    : std::min(conclave::server::kDefaultContemplateAgents,
                                               limits.max_agents);
  const int max_tokens = r.has_max_tokens()
                             ? r.max_tokens()
                             : std::min(kDocumentedDefaultMaxTokens, limits.max_tokens_limit);
  const std::string values =
      absl::StrCat(" (agents=", agents, " max_tokens=", max_tokens, " thinking_budget=",
                   r.has_thinking_budget() ? absl::StrCat(r.thinking_budget()) : "unset",
                   " max_tokens_limit=", limits.max_tokens_limit, ")");
  if (agents < 1 || agents > limits.max_agents) Fail(kTarget, "agents out of range" + values);
  if (max_tokens < 2 || max_tokens > limits.max_tokens_limit) {
    Fail(kTarget, "max_tokens out of range" + values);
  }
  if (r.has_thinking_budget() && (r.thinking_budget() < 1 || r.thinking_budget() >= max_tokens)) {
    Fail(kTarget, "thinking_budget outside [1, max_tokens - 1]" + values);
  }

  const conclave::v1::ConsensusStopping& consensus = r.stopping().consensus();
  if (consensus.enabled()) {
    conclave::orchestrator::ConsensusStopOptions c;
    if (consensus.has_min_finished()) c.min_finished = consensus.min_finished();
    if (consensus.has_vote_share()) c.threshold = consensus.vote_share();
    CheckStatus(conclave::orchestrator::ConsensusStop::Create(c).status(), "ConsensusStop");
  }
  const conclave::v1::ConfidenceStopping& confidence = r.stopping().confidence();
  if (confidence.enabled()) {
    conclave::orchestrator::ConfidenceStopOptions c;
    if (confidence.has_warmup_agents()) c.warmup = confidence.warmup_agents();
    if (confidence.has_keep_top_percent()) c.keep_top_percent = confidence.keep_top_percent();
    if (confidence.has_window()) c.min_tokens = confidence.window();
    CheckStatus(conclave::orchestrator::ConfidenceStop::Create(c).status(), "ConfidenceStop");
  }

  conclave::orchestrator::PlanOptions plan;
  plan.agents = agents;
  plan.base_temperature = r.has_temperature() ? r.temperature()
                                              : conclave::server::kDefaultTemperature;
  plan.temperature_spread = std::min(r.has_temperature_spread() ? r.temperature_spread() : 0.0f,
                                     2.0f * plan.base_temperature);
  plan.seed = r.seed();
  plan.thinking_budget = r.has_thinking_budget() ? r.thinking_budget() : 0;
  absl::StatusOr<std::vector<conclave::orchestrator::AgentSpec>> specs =
      conclave::orchestrator::BuildAgentPlan(plan, limits.max_agents);
  CheckStatus(specs.status(), "BuildAgentPlan");
  conclave::engine::SamplingParams sampling;
  sampling.top_p = conclave::server::kDefaultTopP;
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
