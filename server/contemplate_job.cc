#include "server/contemplate_job.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/contemplate_options.h"
#include "server/metrics/server_metrics.h"
#include "server/proto_convert.h"
#include "spdlog/spdlog.h"

namespace conclave::server {
namespace {

using orchestrator::AggregatorKind;
using orchestrator::ContemplateEvent;
using orchestrator::ContemplateResult;

v1::Aggregator ToProto(AggregatorKind a) {
  switch (a) {
    case AggregatorKind::kMajority: return v1::AGGREGATOR_MAJORITY;
    case AggregatorKind::kConfidence: return v1::AGGREGATOR_CONFIDENCE;
    case AggregatorKind::kVerifier: return v1::AGGREGATOR_VERIFIER;
    case AggregatorKind::kSynthesis: return v1::AGGREGATOR_SYNTHESIS;
    default: return v1::AGGREGATOR_UNSPECIFIED;
  }
}

v1::AgentStopped::Reason ToProto(orchestrator::StopReason r) {
  switch (r) {
    case orchestrator::StopReason::kConsensus: return v1::AgentStopped::REASON_CONSENSUS;
    case orchestrator::StopReason::kLowConfidence: return v1::AgentStopped::REASON_LOW_CONFIDENCE;
    case orchestrator::StopReason::kCancelled: return v1::AgentStopped::REASON_CANCELLED;
  }
  return v1::AgentStopped::REASON_UNSPECIFIED;
}

}  // namespace

ContemplateJob::ContemplateJob(ServiceContext& service, std::string request_id, absl::Time start,
                               absl::string_view transport)
    : service_(service),
      request_id_(std::move(request_id)),
      start_(start),
      transport_(transport),
      contemplation_(service.client()) {}

absl::Status ContemplateJob::Prepare(const v1::ContemplateRequest& request) {
  if (absl::Status s = ValidateContemplateRequest(request, service_.limits()); !s.ok()) return s;
  absl::StatusOr<orchestrator::ContemplateOptions> o =
      ToContemplateOptions(request, service_.limits(), service_.DrawSeed());
  if (!o.ok()) return o.status();
  options_ = *std::move(o);
  // A full engine queue turns the call away here: before the key's quotas
  // are charged and before anything is rendered or tokenized.
  return service_.client().CheckAdmission();
}

auth::AdmissionRequest ContemplateJob::Admission() const {
  int64_t prompt_bytes = 0;
  for (const engine::ChatMessage& m : options_.messages) {
    prompt_bytes += static_cast<int64_t>(m.content.size());
  }
  auth::AdmissionRequest a;
  a.agents = options_.agents;
  a.thinking_budget = options_.thinking_budget;
  a.estimated_tokens = EstimateTokens(prompt_bytes, options_.max_prompt_tokens,
                                      options_.roles.empty() ? 1 : options_.agents, options_.agents,
                                      options_.max_tokens);
  return a;
}

absl::StatusOr<v1::ContemplateEvent> ContemplateJob::Run(const Sink& sink) {
  absl::StatusOr<ContemplateResult> result =
      contemplation_.Run(options_, [&](const ContemplateEvent& e) { sink(ToProtoEvent(e)); });
  if (!result.ok()) return result.status();
  result_ = *std::move(result);
  const ContemplateResult& r = *result_;
  v1::ContemplateEvent out;
  v1::FinalAnswer* f = out.mutable_final_answer();
  f->set_answer(r.answer);
  f->set_normalized_answer(r.normalized);
  f->set_text(r.text);
  for (const orchestrator::VoteTally& t : r.votes) {
    v1::Vote* v = f->add_votes();
    v->set_answer(t.answer);
    v->set_votes(t.votes);
    v->set_weight(static_cast<float>(t.weight));
    for (int agent : t.agents) v->add_agents(agent);
  }
  f->set_support(static_cast<float>(r.support));
  f->set_confidence(static_cast<float>(r.confidence));
  f->set_aggregator(ToProto(r.aggregator));
  v1::ContemplateUsage* u = f->mutable_usage();
  u->set_prompt_tokens(r.usage.prompt_tokens);
  u->set_cached_prompt_tokens(r.usage.cached_prompt_tokens);
  u->set_generated_tokens(r.usage.generated_tokens());
  u->set_agent_tokens(r.usage.agent_tokens);
  u->set_aggregator_tokens(r.usage.aggregator_tokens);
  u->set_saved_tokens_estimate(r.usage.saved_tokens_estimate);
  f->set_wall_seconds(absl::ToDoubleSeconds(absl::Now() - start_));
  f->set_seed(options_.seed);
  f->set_request_id(request_id_);
  return out;
}

auth::TokenUsage ContemplateJob::Spent() {
  const orchestrator::ContemplateUsage spent = contemplation_.usage();
  return {spent.prompt_tokens, spent.generated_tokens(), spent.agent_tokens};
}

void ContemplateJob::End(absl::StatusCode code, absl::string_view message, const Caller* caller) {
  const ContemplateResult* r = result_.has_value() ? &*result_ : nullptr;
  // Ids, counts and timings only: questions and answers are never logged.
  const double ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
  const std::string error =
      code == absl::StatusCode::kOk ? "" : absl::StrCat(" error=\"", message, "\"");
  // The key's public id only (never the secret); none in open mode.
  const std::string key =
      caller != nullptr && !caller->open_mode() ? absl::StrCat(" key=", caller->key_id()) : "";
  if (r == nullptr) {
    spdlog::info("contemplate id={}{} transport={} status={} duration_ms={:.1f}{}", request_id_,
                 key, transport_, absl::StatusCodeToString(code), ms, error);
  } else {
    int stopped = 0;
    for (const orchestrator::AgentOutcome& a : r->agents) stopped += a.stopped.has_value();
    spdlog::info(
        "contemplate id={}{} transport={} status={} agents={} stopped={} aggregator={} "
        "prompt_tokens={} cached_prompt_tokens={} agent_tokens={} aggregator_tokens={} "
        "support={:.2f} duration_ms={:.1f}{}",
        request_id_, key, transport_, absl::StatusCodeToString(code), r->agents.size(), stopped,
        orchestrator::AggregatorName(r->aggregator), r->usage.prompt_tokens,
        r->usage.cached_prompt_tokens, r->usage.agent_tokens, r->usage.aggregator_tokens,
        r->support, ms, error);
  }

  RequestRecord record;
  record.mode = RequestMode::kContemplating;
  record.code = code;
  record.latency = absl::Now() - start_;
  if (r != nullptr) {
    record.usage = RequestRecord::Usage{r->usage.prompt_tokens, r->usage.generated_tokens(),
                                        r->usage.queue_time};
    record.has_answer = r->has_answer;
    if (code == absl::StatusCode::kOk) service_.metrics().OnContemplation(*r);
  }
  service_.metrics().OnRequestFinished(record);
}

v1::ContemplateEvent ToProtoEvent(const ContemplateEvent& e) {
  v1::ContemplateEvent out;
  switch (e.kind) {
    case ContemplateEvent::Kind::kAgentStarted: {
      v1::AgentStarted* m = out.mutable_agent_started();
      m->set_agent(e.agent);
      m->set_role(e.role);
      m->set_temperature(e.temperature);
      m->set_seed(e.seed);
      break;
    }
    case ContemplateEvent::Kind::kAgentText: {
      v1::AgentTextDelta* m = out.mutable_agent_text();
      m->set_agent(e.agent);
      m->set_text(e.text);
      break;
    }
    case ContemplateEvent::Kind::kAgentFinished: {
      v1::AgentFinished* m = out.mutable_agent_finished();
      m->set_agent(e.agent);
      m->set_answer(e.answer.raw);
      m->set_normalized_answer(e.answer.normalized);
      m->set_has_answer(e.answer.found);
      m->set_confidence(static_cast<float>(e.confidence));
      m->set_tokens(e.tokens);
      m->set_finish_reason(server::ToProto(e.finish));
      break;
    }
    case ContemplateEvent::Kind::kAgentStopped: {
      v1::AgentStopped* m = out.mutable_agent_stopped();
      m->set_agent(e.agent);
      m->set_reason(ToProto(e.stop_reason));
      m->set_tokens(e.tokens);
      break;
    }
    case ContemplateEvent::Kind::kVerifierScores: {
      v1::VerifierScores* m = out.mutable_verifier_scores();
      for (const auto& [agent, p] : e.scores) {
        v1::VerifierScores::Score* s = m->add_scores();
        s->set_agent(agent);
        s->set_p_yes(static_cast<float>(p));
      }
      break;
    }
  }
  return out;
}

}  // namespace conclave::server
