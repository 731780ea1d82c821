#include "server/contemplate_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/access_control.h"
#include "server/grpc_auth.h"
#include "server/metrics/server_metrics.h"
#include "server/proto_convert.h"
#include "server/status_map.h"
#include "server/streaming_reactor.h"
#include "server/validation.h"
#include "spdlog/spdlog.h"

namespace conclave::server {
namespace {

using orchestrator::AggregatorKind;
using orchestrator::AnswerFormat;
using orchestrator::ContemplateEvent;
using orchestrator::ContemplateResult;

// Defaults of absent fields (documented in conclave.proto).
constexpr int kDefaultContemplateMaxTokens = 1024;
constexpr float kDefaultVoteShare = 0.75f;
constexpr float kDefaultKeepTopPercent = 90.0f;
constexpr float kDefaultConfidenceEta = 90.0f;

AggregatorKind FromProto(v1::Aggregator a) {
  switch (a) {
    case v1::AGGREGATOR_MAJORITY: return AggregatorKind::kMajority;
    case v1::AGGREGATOR_CONFIDENCE: return AggregatorKind::kConfidence;
    case v1::AGGREGATOR_VERIFIER: return AggregatorKind::kVerifier;
    case v1::AGGREGATOR_SYNTHESIS: return AggregatorKind::kSynthesis;
    default: return AggregatorKind::kAuto;
  }
}

v1::Aggregator ToProto(AggregatorKind a) {
  switch (a) {
    case AggregatorKind::kMajority: return v1::AGGREGATOR_MAJORITY;
    case AggregatorKind::kConfidence: return v1::AGGREGATOR_CONFIDENCE;
    case AggregatorKind::kVerifier: return v1::AGGREGATOR_VERIFIER;
    case AggregatorKind::kSynthesis: return v1::AGGREGATOR_SYNTHESIS;
    default: return v1::AGGREGATOR_UNSPECIFIED;
  }
}

AnswerFormat FromProto(v1::AnswerFormat f) {
  switch (f) {
    case v1::ANSWER_FORMAT_GSM8K: return AnswerFormat::kGsm8k;
    case v1::ANSWER_FORMAT_BOXED: return AnswerFormat::kBoxed;
    case v1::ANSWER_FORMAT_ANSWER_LINE: return AnswerFormat::kAnswerLine;
    case v1::ANSWER_FORMAT_MULTIPLE_CHOICE: return AnswerFormat::kMultipleChoice;
    case v1::ANSWER_FORMAT_NUMBER: return AnswerFormat::kNumber;
    default: return AnswerFormat::kAuto;
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

// What a run asks of its key's quotas. The token estimate is
// EstimateTokens': prompt bytes / 4, once per distinct agent prompt (one
// without roles, as all agents share one request then), plus every agent's
// max_tokens; aggregator passes and forced answers are charged at the end.
auth::AdmissionRequest AdmissionOf(const orchestrator::ContemplateOptions& o) {
  int64_t prompt_bytes = 0;
  for (const engine::ChatMessage& m : o.messages) {
    prompt_bytes += static_cast<int64_t>(m.content.size());
  }
  auth::AdmissionRequest a;
  a.agents = o.agents;
  a.thinking_budget = o.thinking_budget;
  a.estimated_tokens = EstimateTokens(prompt_bytes, o.max_prompt_tokens,
                                      o.roles.empty() ? 1 : o.agents, o.agents, o.max_tokens);
  return a;
}

class ContemplateReactor final : public StreamingReactor<v1::ContemplateEvent> {
 public:
  ContemplateReactor(ServiceContext& service, grpc::CallbackServerContext* context,
                     const v1::ContemplateRequest& request)
      : service_(service),
        context_(context),
        request_id_(service.NextRequestId()),
        start_(absl::Now()),
        contemplation_(service.client()) {
    // The key first: nothing of the request is looked at for an unknown caller.
    absl::StatusOr<Caller> caller = AuthenticateCall(service.access(), *context);
    if (!caller.ok()) {
      EndEarly(caller.status());
      return;
    }
    caller_.emplace(*std::move(caller));
    absl::Status status = ValidateContemplateRequest(request, service.limits());
    if (status.ok()) {
      absl::StatusOr<orchestrator::ContemplateOptions> o =
          ToContemplateOptions(request, service.limits(), service.DrawSeed());
      status = o.status();
      if (o.ok()) options_ = *std::move(o);
    }
    if (status.ok()) status = caller_->Admit(AdmissionOf(options_));
    if (!status.ok()) {
      EndEarly(status);
      return;
    }
    // Every engine request of the run (agents, forced answers, verifier and
    // synthesis passes) reuses only blocks cached under the caller's key.
    options_.cache_salt = caller_->cache_salt();
    if (absl::Status s = StartWork(service.threads(), [this] { Work(); }); !s.ok()) {
      // StartWork has finished the call.
      Log(ToGrpcStatus(s), nullptr);
      Record(ToGrpcStatus(s), nullptr);
      caller_->Finish(s.code(), {});
    }
  }

 private:
  ~ContemplateReactor() override = default;

  void CancelWork() override { contemplation_.Cancel(); }

  void Work() {
    const absl::StatusOr<ContemplateResult> result =
        contemplation_.Run(options_, [this](const ContemplateEvent& e) { OnEvent(e); });
    grpc::Status status;
    std::optional<v1::ContemplateEvent> last;
    if (cancelled()) {
      const bool past_deadline = context_->deadline() <= std::chrono::system_clock::now();
      status = past_deadline
                   ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded")
                   : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (!result.ok()) {
      status = ToGrpcStatus(result.status());
    } else {
      last = FinalEvent(*result);
    }
    Log(status, result.ok() ? &*result : nullptr);
    Record(status, result.ok() ? &*result : nullptr);
    // What the run spent, also when it failed or was cancelled.
    const orchestrator::ContemplateUsage spent = contemplation_.usage();
    caller_->Finish(static_cast<absl::StatusCode>(status.error_code()),
                    {spent.prompt_tokens, spent.generated_tokens(), spent.agent_tokens});
    Complete(status, std::move(last));
  }

  // Ends a call that never ran (see GenerateReactor::EndEarly).
  void EndEarly(const absl::Status& status) {
    Log(ToGrpcStatus(status), nullptr);
    Record(ToGrpcStatus(status), nullptr);
    if (caller_.has_value()) caller_->Finish(status.code(), {});
    AddRetryAfterTrailer(*context_, status);
    FinishNow(status);
  }

  void OnEvent(const ContemplateEvent& e) {
    Emit([&](std::deque<v1::ContemplateEvent>& outbox) {
      if (e.kind == ContemplateEvent::Kind::kAgentText && !outbox.empty() &&
          outbox.back().has_agent_text() && outbox.back().agent_text().agent() == e.agent) {
        outbox.back().mutable_agent_text()->mutable_text()->append(e.text);
        return;
      }
      v1::ContemplateEvent& out = outbox.emplace_back();
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
    });
  }

  v1::ContemplateEvent FinalEvent(const ContemplateResult& r) const {
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

  void Log(const grpc::Status& status, const ContemplateResult* r) const {
    // Ids, counts and timings only: questions and answers are never logged.
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
    const std::string code =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
    const std::string error =
        status.ok() ? "" : absl::StrCat(" error=\"", status.error_message(), "\"");
    // The key's public id only (never the secret); none in open mode.
    const std::string key = caller_.has_value() && !caller_->open_mode()
                                ? absl::StrCat(" key=", caller_->key_id())
                                : "";
    if (r == nullptr) {
      spdlog::info("contemplate id={}{} status={} duration_ms={:.1f}{}", request_id_, key, code,
                   ms, error);
      return;
    }
    int stopped = 0;
    for (const orchestrator::AgentOutcome& a : r->agents) stopped += a.stopped.has_value();
    spdlog::info(
        "contemplate id={}{} status={} agents={} stopped={} aggregator={} prompt_tokens={} "
        "cached_prompt_tokens={} agent_tokens={} aggregator_tokens={} support={:.2f} "
        "duration_ms={:.1f}",
        request_id_, key, code, r->agents.size(), stopped, orchestrator::AggregatorName(r->aggregator),
        r->usage.prompt_tokens, r->usage.cached_prompt_tokens, r->usage.agent_tokens,
        r->usage.aggregator_tokens, r->support, ms);
  }

  // The call's end, for ServerMetrics (once per call, as Log).
  void Record(const grpc::Status& status, const ContemplateResult* r) const {
    RequestRecord record;
    record.mode = RequestMode::kContemplating;
    record.code = static_cast<absl::StatusCode>(status.error_code());
    record.latency = absl::Now() - start_;
    if (r != nullptr) {
      record.usage = RequestRecord::Usage{r->usage.prompt_tokens, r->usage.generated_tokens(),
                                          r->usage.queue_time};
      record.has_answer = r->has_answer;
      if (status.ok()) service_.metrics().OnContemplation(*r);
    }
    service_.metrics().OnRequestFinished(record);
  }

  ServiceContext& service_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const std::string request_id_;
  const absl::Time start_;
  std::optional<Caller> caller_;  // null when authentication failed
  orchestrator::ContemplateOptions options_;
  orchestrator::Contemplation contemplation_;
};

}  // namespace

absl::StatusOr<orchestrator::ContemplateOptions> ToContemplateOptions(
    const v1::ContemplateRequest& request, const RequestLimits& limits, uint64_t seed) {
  orchestrator::ContemplateOptions o;
  absl::StatusOr<std::vector<engine::ChatMessage>> messages =
      ValidateMessages(request.messages(), "messages");
  if (!messages.ok()) return messages.status();
  o.messages = *std::move(messages);
  o.agents = request.has_agents() ? request.agents()
                                  : std::min(kDefaultContemplateAgents, limits.max_agents);
  o.temperature = request.has_temperature() ? request.temperature() : kDefaultTemperature;
  o.temperature_spread = request.has_temperature_spread() ? request.temperature_spread() : 0.0f;
  // The lowest temperature is clamped at 0 by narrowing the spread.
  o.temperature_spread = std::min(o.temperature_spread, 2.0f * o.temperature);
  o.seed = request.has_seed() ? request.seed() : seed;
  o.roles.assign(request.roles().begin(), request.roles().end());
  o.max_tokens = request.has_max_tokens()
                     ? request.max_tokens()
                     : std::min(kDefaultContemplateMaxTokens, limits.max_tokens_limit);
  o.thinking_budget = request.has_thinking_budget() ? request.thinking_budget() : o.max_tokens * 3 / 4;
  o.sampling.top_p = kDefaultTopP;
  o.answer_format = FromProto(request.answer_format());
  o.aggregator = FromProto(request.aggregator());
  o.confidence_eta = request.has_confidence_eta() ? request.confidence_eta() : kDefaultConfidenceEta;
  o.stream_agent_text = request.stream_agent_text();
  o.max_prompt_tokens = limits.max_prompt_tokens;
  const v1::ConsensusStopping& consensus = request.stopping().consensus();
  if (consensus.enabled()) {
    o.consensus = orchestrator::ConsensusStopOptions{
        consensus.has_min_finished() ? consensus.min_finished() : (o.agents + 1) / 2,
        consensus.has_vote_share() ? consensus.vote_share() : kDefaultVoteShare};
  }
  const v1::ConfidenceStopping& confidence = request.stopping().confidence();
  // The sliding window defaults to an eighth of the agents' budget (at least
  // 16 tokens): DeepConf's 2048 suits traces of tens of thousands of tokens.
  o.confidence_window = confidence.has_window() ? confidence.window()
                                                : std::clamp(o.max_tokens / 8, 16, 2048);
  if (confidence.enabled()) {
    orchestrator::ConfidenceStopOptions c;
    c.warmup = confidence.has_warmup_agents() ? confidence.warmup_agents()
                                              : std::max(1, o.agents / 4);
    c.keep_top_percent =
        confidence.has_keep_top_percent() ? confidence.keep_top_percent() : kDefaultKeepTopPercent;
    c.min_tokens = o.confidence_window;  // judge an agent once its window is full
    o.confidence = c;
  }
  return o;
}

grpc::ServerWriteReactor<v1::ContemplateEvent>* ContemplateHandler::Start(
    grpc::CallbackServerContext* context, const v1::ContemplateRequest& request) {
  return new ContemplateReactor(service_, context, request);
}

}  // namespace conclave::server
