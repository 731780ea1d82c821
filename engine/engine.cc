#include "engine/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/sampling/confidence_window.h"
#include "engine/sampling/stop_checker.h"
#include "kernels/check.h"
#include "spdlog/spdlog.h"

namespace conclave::engine {

// One request's output state: a sampler, stop checker and confidence window
// per sequence.
struct Engine::RequestState {
  int64_t id = 0;
  EngineRequest request;
  std::shared_ptr<RequestStream> stream;
  std::vector<std::unique_ptr<Sampler>> samplers;          // [n]
  std::vector<std::unique_ptr<StopChecker>> stop_checkers;  // [n]
  std::vector<ConfidenceWindow> confidence;                 // [n]
  std::vector<bool> finished;                               // [n]
  std::vector<bool> abort_after_fork;                       // [n]
  int num_finished = 0;
  bool usage_counted_cache = false;
  absl::Time submitted_at;
  bool left_queue = false;  // usage.queue_time is final
  RequestUsage usage;
};

namespace {

absl::Status Overloaded(int queued) {
  return absl::ResourceExhaustedError(
      absl::StrCat("server overloaded: ", queued, " requests queued, retry later"));
}

}  // namespace

struct Engine::Command {
  enum class Kind { kSubmit, kAbort, kAbortSequence } kind;
  int64_t request_id = 0;
  int index = 0;
  std::unique_ptr<RequestState> state;  // kSubmit
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(kernels::Backend& backend,
                                                       const kernels::ModelConfig& model,
                                                       const Tokenizer& tokenizer,
                                                       const EngineConfig& config) {
  if (config.block_size < 1 || config.block_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("block_size=", config.block_size,
                                                   " must be in [1, 1024]"));
  }
  int num_blocks = config.num_kv_blocks;
  if (num_blocks <= 0) {
    // The backend's figure is for its current block size and dtype.
    const kernels::KvCacheConfig& current = backend.kv_cache_config();
    const int64_t per_token = backend.KvBytesPerBlock() / std::max(1, current.block_size) *
                              kernels::KvDtypeBytes(config.kv_dtype) /
                              kernels::KvDtypeBytes(current.dtype);
    const int64_t per_block = std::max<int64_t>(1, per_token * config.block_size);
    num_blocks = static_cast<int>(std::min<int64_t>(config.kv_cache_bytes / per_block, 1 << 24));
  }
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_cache_bytes=", config.kv_cache_bytes, " holds no KV block"));
  }
  if (absl::Status s =
          backend.AllocateKvCache({num_blocks, config.block_size, config.kv_dtype});
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<Engine>(new Engine(backend, model, tokenizer, config, num_blocks));
}

Engine::Engine(kernels::Backend& backend, const kernels::ModelConfig& model,
               const Tokenizer& tokenizer, const EngineConfig& config, int num_blocks)
    : backend_(backend),
      model_(model),
      tokenizer_(tokenizer),
      config_(config),
      blocks_(num_blocks, config.block_size),
      scheduler_(config.scheduler, blocks_) {
  PublishStats();
  loop_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
}

absl::Status Engine::Validate(const EngineRequest& r) const {
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt has no tokens");
  for (int32_t t : r.prompt) {
    if (t < 0 || t >= model_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt token id ", t, " outside the vocabulary of ", model_.vocab_size));
    }
  }
  const int max_n = std::min(config_.max_sequences_per_request,
                             config_.scheduler.max_running_sequences);
  if (r.n < 1 || r.n > max_n) {
    return absl::InvalidArgumentError(absl::StrCat("n=", r.n, " must be in [1, ", max_n, "]"));
  }
  if (r.sampling.size() != 1 && static_cast<int>(r.sampling.size()) != r.n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling has ", r.sampling.size(), " entries; give 1 or n=", r.n));
  }
  for (const SamplingParams& p : r.sampling) {
    if (absl::Status s = ValidateSamplingParams(p); !s.ok()) return s;
  }
  if (r.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens=", r.max_tokens, " must be >= 1"));
  }
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
  if (model_.context_length > 0 && total > model_.context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", r.prompt.size(), " tokens + max_tokens=", r.max_tokens,
        " exceeds the model's context of ", model_.context_length));
  }
  const int64_t blocks_needed = (total + config_.block_size - 1) / config_.block_size;
  if (blocks_needed > blocks_.num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", r.prompt.size(), " tokens + max_tokens=", r.max_tokens, " needs ",
        blocks_needed, " KV blocks; the pool has ", blocks_.num_blocks()));
  }
  if (absl::Status s = ValidateStopStrings(r.stop); !s.ok()) return s;
  for (int32_t t : r.stop_token_ids) {
    if (t < 0 || t >= model_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop token id ", t, " outside the vocabulary of ", model_.vocab_size));
    }
  }
  if (r.confidence_window < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "confidence_window=", r.confidence_window, " must be >= 1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(EngineRequest request) {
  if (absl::Status s = Validate(request); !s.ok()) return s;
  const int64_t id = next_request_id_.fetch_add(1);
  auto state = std::make_unique<RequestState>();
  state->id = id;
  state->submitted_at = absl::Now();
  state->stream = std::make_shared<RequestStream>(id, [this](int64_t rid) { Abort(rid); });
  const int n = request.n;
  for (int i = 0; i < n; ++i) {
    SamplingParams p = request.sampling.size() == 1 ? request.sampling[0] : request.sampling[i];
    if (request.sampling.size() == 1) p.seed += static_cast<uint64_t>(i);
    state->samplers.push_back(std::make_unique<Sampler>(p));
    state->stop_checkers.push_back(std::make_unique<StopChecker>(tokenizer_, request.stop));
    state->confidence.emplace_back(request.confidence_window);
  }
  state->finished.assign(n, false);
  state->abort_after_fork.assign(n, false);
  state->usage.prompt_tokens = static_cast<int>(request.prompt.size());
  state->request = std::move(request);
  std::shared_ptr<RequestStream> stream = state->stream;
  const bool continuation = state->request.continuation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("engine is shutting down");
    if (absl::Status s = AdmitLocked(continuation); !s.ok()) return s;
    if (!continuation) ++queued_new_;
    ++inbox_submits_;
    inbox_.push_back(Command{Command::Kind::kSubmit, id, 0, std::move(state)});
  }
  wake_.notify_all();
  return stream;
}

absl::Status Engine::CheckAdmission() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("engine is shutting down");
  return AdmitLocked(/*continuation=*/false);
}

absl::Status Engine::AdmitLocked(bool continuation) {
  // Requests in the inbox are counted as waiting until the loop takes them.
  const int waiting = inbox_submits_ + waiting_groups_;
  if (waiting >= config_.scheduler.max_waiting_groups) {
    ++rejected_queue_full_;
    return Overloaded(waiting);
  }
  if (!continuation && config_.max_queued_requests > 0 &&
      queued_new_ >= config_.max_queued_requests) {
    ++rejected_queue_full_;
    return Overloaded(queued_new_);
  }
  return absl::OkStatus();
}

void Engine::LeaveQueue(RequestState& st, absl::Time now) {
  if (st.left_queue) return;
  st.usage.queue_time = now - st.submitted_at;
  st.left_queue = true;
  if (st.request.continuation) return;
  std::lock_guard<std::mutex> lock(mu_);
  --queued_new_;
}

void Engine::ExpireQueued(absl::Time now) {
  while (!queue_order_.empty()) {
    auto it = requests_.find(queue_order_.front());
    if (it == requests_.end() || it->second->left_queue) {
      queue_order_.pop_front();
      continue;
    }
    RequestState& st = *it->second;
    const absl::Duration waited = now - st.submitted_at;
    // Submit order is queue_time order: everything behind waited less.
    if (waited < config_.max_queue_wait) break;
    queue_order_.pop_front();
    LeaveQueue(st, now);
    scheduler_.AbortGroup(st.id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++expired_in_queue_;
    }
    st.stream->Close(
        absl::ResourceExhaustedError(absl::StrCat(
            "server overloaded: the request waited ", absl::ToInt64Milliseconds(waited),
            " ms in the queue without starting, max_queue_wait_ms=",
            absl::ToInt64Milliseconds(config_.max_queue_wait), "; retry later")),
        st.usage);
    requests_.erase(it);
  }
}

void Engine::Abort(int64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(Command{Command::Kind::kAbort, request_id, 0, nullptr});
  }
  wake_.notify_all();
}

void Engine::AbortSequence(int64_t request_id, int index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(Command{Command::Kind::kAbortSequence, request_id, index, nullptr});
  }
  wake_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Engine::Loop() {
  while (true) {
    std::deque<Command> commands;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || scheduler_.HasWork(); });
      commands.swap(inbox_);
      stopping = stopping_;
    }
    HandleCommands(commands);
    if (!stopping && config_.max_queue_wait != absl::InfiniteDuration()) {
      ExpireQueued(absl::Now());
    }
    if (stopping) {
      FailAll(absl::UnavailableError("engine shut down"));
      PublishStats();
      return;
    }
    if (scheduler_.HasWork()) Step();
    PublishStats();
  }
}

void Engine::HandleCommands(std::deque<Command>& commands) {
  for (Command& c : commands) {
    switch (c.kind) {
      case Command::Kind::kSubmit: {
        RequestState& st = *c.state;
        absl::Status s = scheduler_.AddGroup(st.id, st.request.prompt, st.request.n,
                                             static_cast<int>(st.request.prompt.size()) +
                                                 st.request.max_tokens,
                                             st.request.cache_salt);
        {
          // Moves from one count to the other in one go, so that Submit's
          // bound never sees the request in neither.
          std::lock_guard<std::mutex> lock(mu_);
          --inbox_submits_;
          waiting_groups_ = scheduler_.stats().waiting_groups;
        }
        if (!s.ok()) {
          LeaveQueue(st, absl::Now());
          st.stream->Close(s, st.usage);
          break;
        }
        if (!st.request.continuation && config_.max_queue_wait != absl::InfiniteDuration()) {
          queue_order_.push_back(st.id);
        }
        requests_[st.id] = std::move(c.state);
        break;
      }
      case Command::Kind::kAbort:
        AbortRequest(c.request_id);
        break;
      case Command::Kind::kAbortSequence: {
        auto it = requests_.find(c.request_id);
        if (it == requests_.end()) break;
        RequestState& st = *it->second;
        if (c.index < 0 || c.index >= st.request.n || st.finished[c.index]) break;
        if (!scheduler_.AbortSequence(c.request_id, c.index)) {
          st.abort_after_fork[c.index] = true;  // not forked yet
          break;
        }
        MarkAborted(st, c.index);
        FinishRequestIfDone(c.request_id);
        break;
      }
    }
  }
}

void Engine::MarkAborted(RequestState& st, int index) {
  st.finished[index] = true;
  ++st.num_finished;
  SequenceDelta d;
  d.index = index;
  d.finish = FinishReason::kAborted;
  st.stream->Push(std::move(d), st.usage);
}

void Engine::AbortRequest(int64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  RequestState& st = *it->second;
  LeaveQueue(st, absl::Now());
  scheduler_.AbortGroup(request_id);
  for (int i = 0; i < st.request.n; ++i) {
    if (st.finished[i]) continue;
    MarkAborted(st, i);
  }
  FinishRequestIfDone(request_id);
}

void Engine::FinishRequestIfDone(int64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  RequestState& st = *it->second;
  if (st.num_finished < st.request.n) return;
  CHECK(!scheduler_.HasGroup(request_id)) << "request " << request_id
                                          << " finished with sequences still scheduled";
  st.stream->Close(absl::OkStatus(), st.usage);
  requests_.erase(it);
}

void Engine::FailAll(const absl::Status& status) {
  std::vector<int64_t> ids;
  for (const auto& [id, st] : requests_) ids.push_back(id);
  for (int64_t id : ids) {
    RequestState& st = *requests_[id];
    LeaveQueue(st, absl::Now());
    scheduler_.AbortGroup(id);
    for (int i = 0; i < st.request.n; ++i) {
      if (st.finished[i]) continue;
      SequenceDelta d;
      d.index = i;
      d.finish = FinishReason::kError;
      st.stream->Push(std::move(d), st.usage);
    }
    st.stream->Close(status, st.usage);
    requests_.erase(id);
  }
}

void Engine::Step() {
  SchedulerStep step = scheduler_.Schedule();
  if (step.empty()) return;
  if (!step.copies.empty()) backend_.CopyBlocks(step.copies);

  // The step's tokens, sequence after sequence. tokens: [step tokens]
  step_tokens_.clear();
  kernels::StepBatch batch;
  int n_logits = 0;
  const absl::Time now = absl::Now();
  for (const ScheduledSequence& s : step.scheduled) {
    const Sequence& seq = *s.seq;
    kernels::SequenceStep ss;
    ss.token_begin = static_cast<int>(step_tokens_.size());
    ss.num_tokens = s.num_new_tokens;
    ss.start_pos = seq.num_computed;
    ss.block_table = seq.blocks.blocks;
    ss.want_logits = s.want_logits;
    // Prompt positions in the prefill order, generated ones in the decode
    // order, however the sequence is chunked, batched or recomputed.
    ss.decode_from_pos = seq.prompt_len >= 2 ? seq.prompt_len : 0;
    step_tokens_.insert(step_tokens_.end(), seq.tokens.begin() + seq.num_computed,
                        seq.tokens.begin() + seq.num_computed + s.num_new_tokens);
    batch.sequences.push_back(ss);
    if (s.want_logits) ++n_logits;
    if (seq.num_computed < seq.prompt_len) {
      // A request's first step is always a prefill chunk (at least its last
      // prompt token is computed), so its queue time ends here.
      auto it = requests_.find(seq.group_id);
      if (it != requests_.end()) LeaveQueue(*it->second, now);
      if (it != requests_.end() && !it->second->usage_counted_cache && seq.index == 0 &&
          seq.num_preemptions == 0) {
        it->second->usage.cached_prompt_tokens = seq.num_computed;
        it->second->usage_counted_cache = true;
      }
    }
  }
  batch.tokens = step_tokens_;
  logits_.resize(static_cast<size_t>(n_logits) * model_.vocab_size);
  absl::Status s = backend_.Forward(batch, absl::MakeSpan(logits_));
  if (!s.ok()) {
    // A batch the scheduler built is always valid; a failure here is the
    // backend's. Fail every request rather than loop on it.
    spdlog::error("forward pass failed: {}", s.ToString());
    FailAll(absl::InternalError(absl::StrCat("forward pass failed: ", s.message())));
    return;
  }
  ++steps_;
  computed_tokens_ += step.num_tokens();
  scheduler_.OnStepComputed(step);

  std::vector<int64_t> finished_requests;
  int row = 0;
  for (const ScheduledSequence& s : step.scheduled) {
    if (!s.want_logits) continue;
    const float* logits = logits_.data() + static_cast<size_t>(row++) * model_.vocab_size;
    Sequence& seq = *s.seq;
    RequestState& st = *requests_.at(seq.group_id);
    if (seq.pending_forks > 1) {
      for (Sequence* member : scheduler_.Fork(seq)) {
        if (st.abort_after_fork[member->index]) continue;
        SampleSequence(st, *member, logits, finished_requests);
      }
      for (int i = 0; i < st.request.n; ++i) {
        if (!st.abort_after_fork[i]) continue;
        st.abort_after_fork[i] = false;
        scheduler_.AbortSequence(st.id, i);
        MarkAborted(st, i);
      }
      finished_requests.push_back(st.id);
    } else {
      SampleSequence(st, seq, logits, finished_requests);
    }
  }
  for (int64_t id : finished_requests) FinishRequestIfDone(id);

  if (config_.check_invariants) {
    absl::Status c = blocks_.CheckConsistency(scheduler_.LiveTables());
    CHECK(c.ok()) << "KV block invariant broken: " << c;
  }
}

void Engine::SampleSequence(RequestState& st, Sequence& seq, const float* logits,
                            std::vector<int64_t>& finished) {
  const int i = seq.index;
  const EngineRequest& r = st.request;
  const absl::Span<const int32_t> all(seq.tokens);
  SampledToken t = st.samplers[i]->Sample(absl::MakeConstSpan(logits, model_.vocab_size),
                                          all.subspan(0, seq.prompt_len),
                                          all.subspan(seq.prompt_len));
  scheduler_.Append(seq, t.token);
  ++generated_tokens_;
  ++st.usage.generated_tokens;
  st.confidence[i].Add(t.confidence);

  SequenceDelta d;
  d.index = i;
  d.tokens.push_back(TokenOutput{t.token, t.logprob, t.confidence, std::move(t.top)});
  d.window_confidence = st.confidence[i].mean();
  const bool stop_token =
      (!r.ignore_eos && tokenizer_.IsEndOfGeneration(t.token)) ||
      std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), t.token) !=
          r.stop_token_ids.end();
  if (stop_token) {
    d.finish = FinishReason::kStopToken;
  } else {
    TextDelta text = st.stop_checkers[i]->Append(t.token);
    d.text = std::move(text.text);
    if (text.stopped) {
      d.finish = FinishReason::kStopString;
    } else if (seq.num_generated() >= r.max_tokens) {
      d.finish = FinishReason::kLength;
    }
  }
  if (d.finish != FinishReason::kNone) {
    if (d.finish != FinishReason::kStopString) d.text += st.stop_checkers[i]->Flush();
    st.finished[i] = true;
    ++st.num_finished;
    scheduler_.Finish(seq.id);
    finished.push_back(st.id);
  }
  st.stream->Push(std::move(d), st.usage);
}

void Engine::PublishStats() {
  EngineStats s;
  const SchedulerStats sched = scheduler_.stats();
  s.active_requests = static_cast<int>(requests_.size());
  s.running_sequences = sched.running_sequences;
  s.waiting_sequences = sched.waiting_sequences;
  s.waiting_requests = sched.waiting_groups;
  s.kv = blocks_.stats();
  s.preemptions = sched.preemptions;
  s.steps = steps_;
  s.computed_tokens = computed_tokens_;
  s.generated_tokens = generated_tokens_;
  if (requests_.empty()) s.leaked_blocks = s.kv.used_blocks;
  std::lock_guard<std::mutex> lock(mu_);
  waiting_groups_ = sched.waiting_groups;
  s.queued_requests = queued_new_;
  s.rejected_queue_full = rejected_queue_full_;
  s.expired_in_queue = expired_in_queue_;
  stats_ = s;
}

}  // namespace conclave::engine
