#include "server/http/chat_completions_handler.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "httplib.h"
#include "server/access_control.h"
#include "server/generate_job.h"
#include "server/http/chat_completions.h"
#include "server/http/outbox.h"
#include "server/metrics/server_metrics.h"
#include "server/metrics/token_timer.h"
#include "spdlog/spdlog.h"

namespace conclave::server::http {
namespace {

using Json = nlohmann::ordered_json;

// New output of one choice since the writer last took some.
struct ChoiceDelta {
  int index = 0;
  std::string text;
  std::vector<engine::TokenOutput> tokens;
};

// One call, shared by the HTTP worker thread that answers it and the
// request thread that runs its job; whichever is done last frees it.
class ChatCall : public std::enable_shared_from_this<ChatCall> {
 public:
  explicit ChatCall(EndpointContext context)
      : context_(context),
        service_(context.service),
        request_id_(service_.NextRequestId()),
        start_(absl::Now()),
        token_timer_(start_) {
    meta_.id = absl::StrCat("chatcmpl-", request_id_);
    meta_.created = UnixSeconds(start_);
    meta_.model = service_.model().id;
  }

  // The HTTP worker thread's part (see ChatCompletionsHandler::Handle).
  void Serve(const httplib::Request& req, httplib::Response& res, BodyReader read_body);

 private:
  // Ends a call that never ran: logs, records, finishes the caller's lease
  // (if any) with no usage, answers with `error`.
  void EndEarly(httplib::Response& res, const HttpError& error);

  // The request thread's part.
  void Work();
  void Append(GenerateChunk chunk);
  void Conclude(const absl::StatusOr<GenerateOutcome>& outcome);

  // Stops the job for `why` (the first reason is kept; any thread).
  void Cancel(absl::Status why);

  // The HTTP worker's answers once the job runs.
  void Respond(httplib::Response& res);
  bool WriteStream(httplib::DataSink& sink);

  void Log(absl::StatusCode code, absl::string_view message, const GenerateOutcome* outcome) const;
  void Record(absl::StatusCode code, const GenerateOutcome* outcome) const;
  double TimeToFirstToken(const GenerateOutcome& outcome) const;

  const EndpointContext context_;
  ServiceContext& service_;
  const std::string request_id_;
  const absl::Time start_;
  ChatMeta meta_;
  ChatRequest request_;
  std::optional<Caller> caller_;  // set once authenticated
  std::unique_ptr<GenerateJob> job_;
  TokenTimer token_timer_;  // touched only by the job's thread
  Outbox<ChoiceDelta> outbox_;
  std::optional<GenerateOutcome> outcome_;  // set before outbox_.Close; read after it

  std::mutex mu_;               // guards cancel_reason_
  absl::Status cancel_reason_;  // OK until Cancel

  // Last: destroyed first, so that a shutdown's CancelAll, which holds
  // ActiveCalls' lock, never sees the call half destroyed.
  std::unique_ptr<ActiveCalls::Registration> registration_;
};

void ChatCall::Serve(const httplib::Request& req, httplib::Response& res, BodyReader read_body) {
  if (context_.draining.load()) return EndEarly(res, ShuttingDownError());
  // The key first: nothing of the request is read for an unknown caller.
  absl::StatusOr<Caller> caller = service_.access().Authenticate(AuthorizationOf(req));
  if (!caller.ok()) return EndEarly(res, ToHttpError(caller.status()));
  caller_.emplace(*std::move(caller));
  std::string body;
  if (std::optional<HttpError> error = read_body(&body); error.has_value()) {
    return EndEarly(res, *error);
  }
  absl::StatusOr<ChatRequest> parsed = ParseChatCompletionRequest(body, service_.limits());
  if (!parsed.ok()) return EndEarly(res, ToHttpError(parsed.status()));
  request_ = *std::move(parsed);
  // A full engine queue turns the call away before the key's quotas are
  // charged and before anything is rendered or tokenized.
  if (absl::Status s = service_.client().CheckAdmission(); !s.ok()) {
    return EndEarly(res, ToHttpError(s));
  }
  if (absl::Status s = caller_->Admit(GenerateAdmission(request_.plan, service_.limits()));
      !s.ok()) {
    return EndEarly(res, ToHttpError(s));
  }
  job_ = std::make_unique<GenerateJob>(service_.client(), request_.plan, service_.limits(),
                                       service_.DrawSeed(), caller_->cache_salt());
  registration_ =
      context_.calls.Add([this] { Cancel(absl::UnavailableError("the server is shutting down")); });
  // Registered first, then checked: a shutdown that began before cannot
  // miss this call, and one that begins after will cancel it.
  if (context_.draining.load()) {
    const HttpError error = ShuttingDownError();
    registration_.reset();
    return EndEarly(res, error);
  }
  std::shared_ptr<ChatCall> self = shared_from_this();
  if (absl::Status s = service_.threads().Run([self] { self->Work(); }); !s.ok()) {
    registration_.reset();
    return EndEarly(res, ToHttpError(s));
  }
  Respond(res);
}

void ChatCall::EndEarly(httplib::Response& res, const HttpError& error) {
  Log(error.canonical, error.message, nullptr);
  Record(error.canonical, nullptr);
  if (caller_.has_value()) caller_->Finish(error.canonical, {});
  SendError(res, error);
}

void ChatCall::Work() {
  const absl::StatusOr<GenerateOutcome> outcome =
      job_->Run([this](GenerateChunk chunk) { Append(std::move(chunk)); });
  Conclude(outcome);
}

void ChatCall::Append(GenerateChunk chunk) {
  service_.metrics().OnTokens(
      RequestMode::kInstant,
      token_timer_.OnTokens(static_cast<int>(chunk.tokens.size()), absl::Now()));
  // The end-of-generation token has no text, and OpenAI reports no logprob
  // for it.
  if (chunk.finish == engine::FinishReason::kStopToken && !chunk.tokens.empty()) {
    chunk.tokens.pop_back();
  }
  outbox_.Emit([&](std::deque<ChoiceDelta>& items) {
    if (!items.empty() && items.back().index == chunk.index) {
      ChoiceDelta& last = items.back();
      last.text += chunk.text;
      last.tokens.insert(last.tokens.end(), std::make_move_iterator(chunk.tokens.begin()),
                         std::make_move_iterator(chunk.tokens.end()));
      return;
    }
    items.push_back(ChoiceDelta{chunk.index, std::move(chunk.text), std::move(chunk.tokens)});
  });
}

void ChatCall::Conclude(const absl::StatusOr<GenerateOutcome>& outcome) {
  absl::Status status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = cancel_reason_;
  }
  if (status.ok()) {
    if (!outcome.ok()) {
      status = outcome.status();
    } else if (outcome->finish == engine::FinishReason::kAborted) {
      // Aborted without a cancellation from this call: the engine is stopping.
      status = absl::UnavailableError("the server is shutting down");
    }
  }
  const GenerateOutcome* ran = outcome.ok() ? &*outcome : nullptr;
  Log(status.code(), status.message(), ran);
  Record(status.code(), ran);
  // What the call used, cancelled or not (a failed job reports nothing).
  auth::TokenUsage used;
  if (ran != nullptr) {
    used.prompt_tokens = ran->usage.prompt_tokens;
    used.generated_tokens = ran->usage.generated_tokens;
    used.agent_tokens = ran->usage.generated_tokens;
    outcome_ = *ran;
  }
  // The lease ends before the answer is written, so a key with
  // max_concurrent_requests=1 may send its next call as soon as it has it.
  caller_->Finish(status.code(), used);
  outbox_.Close(status);
}

void ChatCall::Cancel(absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancel_reason_.ok()) return;
    cancel_reason_ = std::move(why);
  }
  job_->Cancel();
}

void ChatCall::Respond(httplib::Response& res) {
  if (request_.stream) {
    // Headers wait for the first token: an error before it (prompt too
    // long, the engine's queue) is still a plain HTTP error.
    if (!outbox_.WaitForOutput() && !outbox_.status().ok()) {
      SendError(res, ToHttpError(outbox_.status()));
      registration_.reset();
      return;
    }
    std::shared_ptr<ChatCall> self = shared_from_this();
    SendEventStream(
        res, [self](httplib::DataSink& sink) { return self->WriteStream(sink); },
        [self](bool success) {
          // Also when the provider never ran: nobody reads any more.
          if (!success) {
            self->Cancel(absl::CancelledError("the client closed the connection"));
            self->outbox_.Abandon();
          }
          self->registration_.reset();
        });
    return;
  }
  std::vector<ChatChoice> choices(request_.plan.n);
  std::deque<ChoiceDelta> items;
  while (outbox_.Take(items)) {
    for (ChoiceDelta& d : items) {
      ChatChoice& c = choices[d.index];
      c.text += d.text;
      c.tokens.insert(c.tokens.end(), std::make_move_iterator(d.tokens.begin()),
                      std::make_move_iterator(d.tokens.end()));
    }
  }
  registration_.reset();
  const absl::Status status = outbox_.status();
  if (!status.ok()) return SendError(res, ToHttpError(status));
  for (int i = 0; i < request_.plan.n; ++i) choices[i].finish = outcome_->finishes[i];
  const engine::Tokenizer& tokenizer = service_.client().tokenizer();
  SendJson(res, 200,
           DumpJson(ChatCompletionJson(meta_, choices, outcome_->usage, request_.logprobs,
                                       [&](int32_t id) { return tokenizer.TokenPiece(id); })));
}

bool ChatCall::WriteStream(httplib::DataSink& sink) {
  const engine::Tokenizer& tokenizer = service_.client().tokenizer();
  const auto piece = [&](int32_t id) { return tokenizer.TokenPiece(id); };
  const bool usage = request_.include_usage;
  bool ok = true;
  const auto write = [&](const Json& event) {
    const std::string data = SseData(DumpJson(event));
    if (ok && !sink.write(data.data(), data.size())) {
      // The client went away: stop the engine request now.
      ok = false;
      Cancel(absl::CancelledError("the client closed the connection"));
      outbox_.Abandon();
    }
    return ok;
  };
  for (int i = 0; i < request_.plan.n; ++i) {
    if (!write(ChatChunkJson(meta_, i, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr,
                             usage))) {
      return false;
    }
  }
  std::deque<ChoiceDelta> items;
  while (outbox_.Take(items)) {
    for (const ChoiceDelta& d : items) {
      if (d.text.empty() && d.tokens.empty()) continue;
      Json logprobs = request_.logprobs ? LogprobsJson(d.tokens, piece) : Json(nullptr);
      if (!write(ChatChunkJson(meta_, d.index, {{"content", d.text}}, std::move(logprobs), nullptr,
                               usage))) {
        return false;
      }
    }
  }
  const absl::Status status = outbox_.status();
  if (status.ok()) {
    for (int i = 0; i < request_.plan.n; ++i) {
      if (!write(ChatChunkJson(meta_, i, Json::object(), nullptr,
                               FinishReasonJson(outcome_->finishes[i]), usage))) {
        return false;
      }
    }
    if (usage && !write(UsageChunkJson(meta_, outcome_->usage))) return false;
  } else {
    // Too late for an HTTP status: the error goes in the stream.
    const std::string error = SseData(ErrorBody(ToHttpError(status)));
    if (!sink.write(error.data(), error.size())) return false;
  }
  if (!sink.write(kSseDone.data(), kSseDone.size())) return false;
  sink.done();
  return true;
}

double ChatCall::TimeToFirstToken(const GenerateOutcome& outcome) const {
  if (outcome.first_token_at == absl::InfinitePast()) return 0;
  return absl::ToDoubleSeconds(outcome.first_token_at - start_);
}

void ChatCall::Log(absl::StatusCode code, absl::string_view message,
                   const GenerateOutcome* outcome) const {
  // Ids, counts and timings only: prompts and completions are never logged.
  const double total_ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
  const std::string error =
      code == absl::StatusCode::kOk ? "" : absl::StrCat(" error=\"", message, "\"");
  // The key's public id only (never the secret); none in open mode.
  const std::string key =
      caller_.has_value() && !caller_->open_mode() ? absl::StrCat(" key=", caller_->key_id()) : "";
  if (outcome == nullptr) {
    spdlog::info("chat_completion id={}{} transport=http status={} duration_ms={:.1f}{}",
                 request_id_, key, absl::StatusCodeToString(code), total_ms, error);
    return;
  }
  spdlog::info(
      "chat_completion id={}{} transport=http n={} stream={} status={} finish={} "
      "prompt_tokens={} cached_prompt_tokens={} generated_tokens={} ttft_ms={:.1f} "
      "duration_ms={:.1f}{}",
      request_id_, key, request_.plan.n, request_.stream, absl::StatusCodeToString(code),
      engine::FinishReasonName(outcome->finish), outcome->usage.prompt_tokens,
      outcome->usage.cached_prompt_tokens, outcome->usage.generated_tokens,
      TimeToFirstToken(*outcome) * 1e3, total_ms, error);
}

void ChatCall::Record(absl::StatusCode code, const GenerateOutcome* outcome) const {
  RequestRecord r;
  r.mode = RequestMode::kInstant;
  r.code = code;
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

}  // namespace

void ChatCompletionsHandler::Handle(const httplib::Request& req, httplib::Response& res,
                                    BodyReader read_body) {
  std::make_shared<ChatCall>(context_)->Serve(req, res, read_body);
}

}  // namespace conclave::server::http
