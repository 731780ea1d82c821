#include "server/generate_reactor.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/grpc_auth.h"
#include "server/proto_convert.h"
#include "server/status_map.h"
#include "spdlog/spdlog.h"

namespace conclave::server {
namespace {

v1::ThinkingEnd ToProto(orchestrator::ThinkingEnd end) {
  switch (end) {
    case orchestrator::ThinkingEnd::kMarker: return v1::THINKING_END_MARKER;
    case orchestrator::ThinkingEnd::kBudget: return v1::THINKING_END_BUDGET;
    case orchestrator::ThinkingEnd::kModelStopped: return v1::THINKING_END_MODEL_STOPPED;
  }
  return v1::THINKING_END_UNSPECIFIED;
}

// Appends `chunk` to `delta` (text, ids and, with logprobs > 0, logprobs).
void AppendTo(v1::GenerateDelta& delta, const GenerateChunk& chunk,
              const engine::Tokenizer& tokenizer, int logprobs) {
  delta.mutable_text()->append(chunk.text);
  for (const engine::TokenOutput& t : chunk.tokens) {
    delta.add_token_ids(t.id);
    if (logprobs <= 0) continue;
    v1::TokenLogprob* lp = delta.add_logprobs();
    lp->set_token_id(t.id);
    lp->set_token(tokenizer.TokenPiece(t.id));
    lp->set_logprob(t.logprob);
    for (const engine::TokenLogprob& alt : t.top) {
      v1::TopLogprob* top = lp->add_top();
      top->set_token_id(alt.token);
      top->set_token(tokenizer.TokenPiece(alt.token));
      top->set_logprob(alt.logprob);
    }
  }
}

double Millis(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

RequestMode ModeAskedFor(v1::Mode mode) {
  switch (mode) {
    case v1::MODE_THINKING: return RequestMode::kThinking;
    case v1::MODE_CONTEMPLATING: return RequestMode::kContemplating;  // refused by Generate
    default: return RequestMode::kInstant;
  }
}

}  // namespace

GenerateReactor::GenerateReactor(ServiceContext& service, grpc::CallbackServerContext* context,
                                 const v1::GenerateRequest& request)
    : service_(service),
      context_(context),
      request_id_(service.NextRequestId()),
      start_(absl::Now()),
      metrics_mode_(ModeAskedFor(request.mode())),
      token_timer_(start_) {
  // The key first: nothing of the request is looked at for an unknown caller.
  absl::StatusOr<Caller> caller = AuthenticateCall(service.access(), *context);
  if (!caller.ok()) {
    EndEarly(caller.status());
    return;
  }
  caller_.emplace(*std::move(caller));
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(request, service.limits());
  if (!plan.ok()) {
    EndEarly(plan.status());
    return;
  }
  mode_ = plan->mode;
  logprobs_ = plan->sampling.logprobs;
  // A full engine queue turns the call away here: before the key's quotas
  // are charged and before anything is rendered or tokenized.
  if (absl::Status s = service.client().CheckAdmission(); !s.ok()) {
    EndEarly(s);
    return;
  }
  if (absl::Status s = caller_->Admit(GenerateAdmission(*plan, service.limits())); !s.ok()) {
    EndEarly(s);
    return;
  }
  job_ = std::make_unique<GenerateJob>(service.client(), *std::move(plan), service.limits(),
                                       service.DrawSeed(), caller_->cache_salt());
  if (absl::Status s = StartWork(service.threads(), [this] { Work(); }); !s.ok()) {
    // StartWork has finished the call.
    Log(ToGrpcStatus(s), nullptr);
    Record(ToGrpcStatus(s), nullptr);
    caller_->Finish(s.code(), {});
  }
}

void GenerateReactor::EndEarly(const absl::Status& status) {
  Log(ToGrpcStatus(status), nullptr);
  Record(ToGrpcStatus(status), nullptr);
  if (caller_.has_value()) caller_->Finish(status.code(), {});
  AddRetryAfterTrailer(*context_, WithRetryAfter(status));
  FinishNow(status);
}

void GenerateReactor::CancelWork() {
  if (job_ != nullptr) job_->Cancel();
}

void GenerateReactor::Work() {
  const absl::StatusOr<GenerateOutcome> outcome =
      job_->Run([this](GenerateChunk chunk) { Append(std::move(chunk)); });
  Conclude(outcome);
}

void GenerateReactor::Append(GenerateChunk chunk) {
  service_.metrics().OnTokens(
      metrics_mode_, token_timer_.OnTokens(static_cast<int>(chunk.tokens.size()), absl::Now()));
  const engine::Tokenizer& tokenizer = service_.client().tokenizer();
  const v1::Segment segment = chunk.thinking ? v1::SEGMENT_THINKING : v1::SEGMENT_ANSWER;
  Emit([&](std::deque<v1::GenerateResponse>& outbox) {
    if (outbox.empty() || !outbox.back().has_delta() ||
        outbox.back().delta().segment() != segment) {
      outbox.emplace_back().mutable_delta()->set_segment(segment);
    }
    AppendTo(*outbox.back().mutable_delta(), chunk, tokenizer, logprobs_);
  });
}

void GenerateReactor::Conclude(const absl::StatusOr<GenerateOutcome>& outcome) {
  const bool was_cancelled = cancelled();
  grpc::Status status;
  v1::GenerateResponse final_message;
  if (was_cancelled) {
    const bool past_deadline = context_->deadline() <= std::chrono::system_clock::now();
    status = past_deadline
                 ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded")
                 : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  } else if (!outcome.ok()) {
    status = ToGrpcStatus(outcome.status());
    // The engine's queue refused or expired the request.
    AddRetryAfterTrailer(*context_, WithRetryAfter(outcome.status()));
  } else if (outcome->finish == engine::FinishReason::kAborted) {
    // Aborted without a cancellation from this call: the engine is stopping.
    status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
  } else {
    v1::GenerateFinal* f = final_message.mutable_final();
    f->set_finish_reason(ToProto(outcome->finish));
    v1::Usage* usage = f->mutable_usage();
    usage->set_prompt_tokens(outcome->usage.prompt_tokens);
    usage->set_cached_prompt_tokens(outcome->usage.cached_prompt_tokens);
    usage->set_generated_tokens(outcome->usage.generated_tokens);
    usage->set_thinking_tokens(outcome->thinking_tokens);
    f->mutable_timing()->set_time_to_first_token_seconds(TimeToFirstToken(*outcome));
    f->mutable_timing()->set_total_seconds(absl::ToDoubleSeconds(absl::Now() - start_));
    f->set_model(service_.model().id);
    f->set_seed(outcome->seed);
    if (outcome->thinking_end.has_value()) f->set_thinking_end(ToProto(*outcome->thinking_end));
    f->set_request_id(request_id_);
  }
  Log(status, outcome.ok() ? &*outcome : nullptr);
  Record(status, outcome.ok() ? &*outcome : nullptr);
  // What the call used, cancelled or not (a failed job reports nothing).
  auth::TokenUsage used;
  if (outcome.ok()) {
    used.prompt_tokens = outcome->usage.prompt_tokens;
    used.generated_tokens = outcome->usage.generated_tokens;
    used.agent_tokens = outcome->usage.generated_tokens;
  }
  caller_->Finish(static_cast<absl::StatusCode>(status.error_code()), used);
  Complete(status, std::move(final_message));
}

double GenerateReactor::TimeToFirstToken(const GenerateOutcome& outcome) const {
  if (outcome.first_token_at == absl::InfinitePast()) return 0;
  return absl::ToDoubleSeconds(outcome.first_token_at - start_);
}

void GenerateReactor::Log(const grpc::Status& status, const GenerateOutcome* outcome) const {
  // Ids, counts and timings only: prompts and completions are never logged.
  const double total_ms = Millis(absl::Now() - start_);
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  const std::string error = status.ok() ? "" : absl::StrCat(" error=\"", status.error_message(), "\"");
  // The key's public id only (never the secret); none in open mode.
  const std::string key =
      caller_.has_value() && !caller_->open_mode() ? absl::StrCat(" key=", caller_->key_id()) : "";
  if (outcome == nullptr) {
    spdlog::info("generate id={}{} mode={} status={} duration_ms={:.1f}{}", request_id_, key,
                 GenerateModeName(mode_), code, total_ms, error);
    return;
  }
  spdlog::info(
      "generate id={}{} mode={} status={} finish={} prompt_tokens={} cached_prompt_tokens={} "
      "generated_tokens={} thinking_tokens={} ttft_ms={:.1f} duration_ms={:.1f}{}",
      request_id_, key, GenerateModeName(mode_), code, engine::FinishReasonName(outcome->finish),
      outcome->usage.prompt_tokens, outcome->usage.cached_prompt_tokens,
      outcome->usage.generated_tokens, outcome->thinking_tokens,
      TimeToFirstToken(*outcome) * 1e3, total_ms, error);
}

void GenerateReactor::Record(const grpc::Status& status, const GenerateOutcome* outcome) const {
  RequestRecord r;
  r.mode = metrics_mode_;
  r.code = static_cast<absl::StatusCode>(status.error_code());
  r.latency = absl::Now() - start_;
  // prompt_tokens is set once the engine took the request; a call cancelled
  // before that used nothing.
  if (outcome != nullptr && outcome->usage.prompt_tokens > 0) {
    r.usage = RequestRecord::Usage{outcome->usage.prompt_tokens, outcome->usage.generated_tokens,
                                   outcome->usage.queue_time};
  }
  if (outcome != nullptr) r.finish = outcome->finish;
  service_.metrics().OnRequestFinished(r);
}

}  // namespace conclave::server
