#include "orchestrator/contemplation.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/sampling/confidence_window.h"
#include "orchestrator/aggregate/verifier_score.h"
#include "orchestrator/plan/prompts.h"

namespace conclave::orchestrator {

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kConsensus: return "consensus";
    case StopReason::kLowConfidence: return "low_confidence";
    case StopReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

namespace {

// How long the run waits on one stream when no stream had output.
constexpr absl::Duration kPollWait = absl::Milliseconds(5);
// Most tokens of a forced answer (after the thinking budget ran out).
constexpr int kForcedAnswerTokens = 48;
// Characters of one solution the verifier reads (longer ones lose their middle).
constexpr size_t kVerifierSolutionChars = 3000;
// The smallest share of a solution the synthesis prompt is cut down to.
constexpr size_t kMinSynthesisChars = 200;

// The question as one text, for the verifier and synthesis prompts: the
// user turns' contents.
std::string QuestionText(const std::vector<engine::ChatMessage>& messages) {
  std::string out;
  for (const engine::ChatMessage& m : messages) {
    if (m.role != "user") continue;
    if (!out.empty()) out += "\n\n";
    out += m.content;
  }
  return out;
}

// What is appended to an agent's reasoning when its thinking budget runs
// out, so that its next tokens are the answer in the requested format.
std::string ForcedAnswerCue(AnswerFormat format) {
  switch (format) {
    case AnswerFormat::kGsm8k: return "\n\n#### ";
    case AnswerFormat::kBoxed: return "\n\nFinal answer: \\boxed{";
    default: return "\n\nAnswer:";
  }
}

// `question` with the role prompt after the last user turn, so that agents
// with different roles still share the prompt up to there.
std::vector<engine::ChatMessage> WithRole(std::vector<engine::ChatMessage> messages,
                                          const std::string& role_prompt) {
  if (role_prompt.empty()) return messages;
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (it->role == "user") {
      it->content = absl::StrCat(it->content, "\n\n", role_prompt);
      return messages;
    }
  }
  messages.push_back({"user", role_prompt});
  return messages;
}

}  // namespace

struct Contemplation::Agent {
  AgentSpec spec;
  std::string role_prompt;
  std::vector<int32_t> prompt;  // its first request's prompt
  std::vector<int32_t> tokens;  // everything it generated
  std::string text;
  int phase_one_tokens = 0;
  enum class State { kRunning, kForcing, kFinished, kStopped } state = State::kRunning;
  int stream = -1;  // index into Runner::streams_
  int sequence = 0;  // its index within that stream's request
  std::unique_ptr<engine::ConfidenceWindow> window;
  AgentOutcome outcome;

  bool live() const { return state == State::kRunning || state == State::kForcing; }
};

struct Contemplation::Stream {
  std::shared_ptr<engine::RequestStream> stream;
  std::vector<int> agents;  // sequence index -> agent (empty for aggregator passes)
  bool aggregator = false;
  bool done = false;
  engine::RequestUsage usage;
};

absl::StatusOr<std::shared_ptr<engine::RequestStream>> Contemplation::Submit(
    engine::EngineRequest request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return absl::CancelledError("the request was cancelled");
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> s = client_.Submit(std::move(request));
  if (s.ok()) streams_.push_back(*s);
  return s;
}

bool Contemplation::cancelled() {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

ContemplateUsage Contemplation::usage() {
  std::lock_guard<std::mutex> lock(mu_);
  return usage_;
}

void Contemplation::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (const auto& s : streams_) s->Cancel();
}

// One run's state; lives on Run's stack.
class Contemplation::Runner {
 public:
  Runner(Contemplation& owner, const ContemplateOptions& options, const Sink& sink)
      : owner_(owner), client_(owner.client_), o_(options), sink_(sink) {}

  ~Runner() {
    // What was spent, whether the run succeeded or not (Contemplation::usage).
    ContemplateUsage spent;
    for (const Stream& s : streams_) {
      spent.prompt_tokens += s.usage.prompt_tokens;
      spent.cached_prompt_tokens += s.usage.cached_prompt_tokens;
      (s.aggregator ? spent.aggregator_tokens : spent.agent_tokens) += s.usage.generated_tokens;
    }
    {
      std::lock_guard<std::mutex> lock(owner_.mu_);
      owner_.usage_ = spent;
    }
    // Whatever is still running (an error path) is aborted.
    for (Stream& s : streams_) {
      if (!s.done) s.stream->Cancel();
    }
  }

  absl::StatusOr<ContemplateResult> Run() {
    if (absl::Status s = ValidateContemplateOptions(o_, client_.max_sequences_per_request());
        !s.ok()) {
      return s;
    }
    if (o_.consensus) {
      absl::StatusOr<ConsensusStop> c = ConsensusStop::Create(*o_.consensus);
      if (!c.ok()) return c.status();
      consensus_.emplace(*std::move(c));
    }
    if (o_.confidence) {
      absl::StatusOr<ConfidenceStop> c = ConfidenceStop::Create(*o_.confidence);
      if (!c.ok()) return c.status();
      confidence_.emplace(*std::move(c));
    }
    if (absl::Status s = PlanAgents(); !s.ok()) return s;
    if (absl::Status s = StartAgents(); !s.ok()) return s;
    if (absl::Status s = RunAgents(); !s.ok()) return s;
    if (absl::Status s = DrainAgentStreams(); !s.ok()) return s;
    return Aggregate();
  }

 private:
  absl::Status PlanAgents() {
    PlanOptions plan;
    plan.agents = o_.agents;
    plan.base_temperature = o_.temperature;
    plan.temperature_spread = o_.temperature_spread;
    plan.seed = o_.seed;
    plan.thinking_budget = o_.thinking_budget;
    // BuildAgentPlan takes only the built-in role names; roles are assigned
    // here so that free-text role prompts work too.
    absl::StatusOr<std::vector<AgentSpec>> specs =
        BuildAgentPlan(plan, client_.max_sequences_per_request());
    if (!specs.ok()) return specs.status();
    const int context = client_.context_length();
    for (AgentSpec& spec : *specs) {
      auto agent = std::make_unique<Agent>();
      if (!o_.roles.empty()) {
        const std::string& role = o_.roles[spec.index % o_.roles.size()];
        if (std::optional<Role> builtin = FindRole(role)) {
          spec.role = std::string(builtin->name);
          spec.role_prompt = std::string(builtin->prompt);
        } else {
          spec.role = "custom";
          spec.role_prompt = role;
        }
      }
      agent->role_prompt = spec.role_prompt;
      AgentSpec no_role = spec;
      no_role.role_prompt.clear();
      absl::StatusOr<std::vector<int32_t>> ids = ChatPromptIds(
          client_, WithRole(AgentMessages(o_.messages, no_role, o_.answer_format), spec.role_prompt));
      if (!ids.ok()) return ids.status();
      if (o_.max_prompt_tokens > 0 && static_cast<int>(ids->size()) > o_.max_prompt_tokens) {
        return absl::InvalidArgumentError(
            absl::StrCat("prompt is ", ids->size(), " tokens after the chat template; the limit is ",
                         "max_prompt_tokens=", o_.max_prompt_tokens));
      }
      if (static_cast<int>(ids->size()) + 2 > context) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the prompt is ", ids->size(), " tokens; the model's context of ", context,
            " leaves no room for an answer"));
      }
      agent->prompt = *std::move(ids);
      agent->spec = spec;
      agent->window = std::make_unique<engine::ConfidenceWindow>(o_.confidence_window);
      agent->outcome.agent = spec.index;
      agents_.push_back(std::move(agent));
    }
    return absl::OkStatus();
  }

  int AgentBudget(const Agent& a) const {
    const int room = client_.context_length() - static_cast<int>(a.prompt.size());
    const int total = std::min(o_.max_tokens, room);
    return o_.thinking_budget > 0 ? std::min(o_.thinking_budget, total) : total;
  }

  // Every request after the run's first is submitted once the first has
  // produced tokens (further agent groups, forced answers, aggregator
  // passes): work the engine has admitted, never refused for a full queue.
  absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(engine::EngineRequest r) {
    r.continuation = !streams_.empty();
    return owner_.Submit(std::move(r));
  }

  absl::Status SubmitGroup(const std::vector<int>& group) {
    // Agents stopped before their request went out (a consensus among the
    // first group) are not submitted.
    std::vector<int> g;
    for (int i : group) {
      if (agents_[i]->live()) g.push_back(i);
    }
    if (g.empty()) return absl::OkStatus();
    engine::EngineRequest r;
    r.prompt = agents_[g[0]]->prompt;
    r.n = static_cast<int>(g.size());
    r.sampling.clear();
    for (int i : g) r.sampling.push_back(AgentSampling(*agents_[i]));
    r.max_tokens = AgentBudget(*agents_[g[0]]);
    r.stop = o_.stop;
    r.confidence_window = o_.confidence_window;
    r.cache_salt = o_.cache_salt;
    absl::StatusOr<std::shared_ptr<engine::RequestStream>> s = Submit(std::move(r));
    if (!s.ok()) return s.status();
    Stream stream;
    stream.stream = *s;
    stream.agents = g;
    for (int k = 0; k < static_cast<int>(g.size()); ++k) {
      agents_[g[k]]->stream = static_cast<int>(streams_.size());
      agents_[g[k]]->sequence = k;
    }
    streams_.push_back(std::move(stream));
    return absl::OkStatus();
  }

  // Reads agent stream `i` (through Consume) until it has ended or, with
  // `until_first_token`, until it has generated a token.
  absl::Status ConsumeUntil(int i, bool until_first_token) {
    while (!streams_[i].done) {
      if (owner_.cancelled()) return absl::CancelledError("the request was cancelled");
      engine::RequestUpdate u;
      if (streams_[i].stream->Next(u, kPollWait) != engine::RequestStream::Poll::kUpdate) continue;
      if (absl::Status s = Consume(i, u); !s.ok()) return s;
      if (until_first_token && u.usage.generated_tokens > 0) break;
    }
    return absl::OkStatus();
  }

  // The agent's sampling: the request's, with its own temperature and seed.
  engine::SamplingParams AgentSampling(const Agent& a) const {
    engine::SamplingParams s = o_.sampling;
    s.temperature = a.spec.temperature;
    s.seed = a.spec.seed;
    return s;
  }

  // One engine request per distinct prompt: its agents are its sequences.
  absl::Status StartAgents() {
    std::vector<std::vector<int>> groups;
    for (int i = 0; i < static_cast<int>(agents_.size()); ++i) {
      bool placed = false;
      for (std::vector<int>& g : groups) {
        if (agents_[g[0]]->prompt == agents_[i]->prompt) {
          g.push_back(i);
          placed = true;
          break;
        }
      }
      if (!placed) groups.push_back({i});
    }
    for (const auto& a : agents_) {
      ContemplateEvent e;
      e.kind = ContemplateEvent::Kind::kAgentStarted;
      e.agent = a->spec.index;
      e.role = a->role_prompt;
      e.temperature = a->spec.temperature;
      e.seed = a->spec.seed;
      sink_(e);
    }
    for (size_t k = 0; k < groups.size(); ++k) {
      if (k == 1) {
        // The groups' prompts differ only after the question: once the
        // first group's prompt is in the KV cache (its first token is out),
        // the others find its full blocks in the prefix cache instead of
        // computing them again in the same step.
        if (absl::Status s = ConsumeUntil(0, /*until_first_token=*/true); !s.ok()) return s;
      }
      if (absl::Status s = SubmitGroup(groups[k]); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  bool AnyAgentLive() const {
    for (const auto& a : agents_) {
      if (a->live()) return true;
    }
    return false;
  }

  // Reads every stream until every agent has finished or been stopped.
  absl::Status RunAgents() {
    while (AnyAgentLive()) {
      if (owner_.cancelled()) return absl::CancelledError("the request was cancelled");
      bool progressed = false;
      int waiting = -1;
      for (size_t i = 0; i < streams_.size(); ++i) {
        if (streams_[i].done || streams_[i].aggregator) continue;
        engine::RequestUpdate u;
        if (streams_[i].stream->Next(u, absl::ZeroDuration()) ==
            engine::RequestStream::Poll::kUpdate) {
          progressed = true;
          if (absl::Status s = Consume(static_cast<int>(i), u); !s.ok()) return s;
        } else if (waiting < 0) {
          waiting = static_cast<int>(i);
        }
      }
      ApplyConfidenceStop();
      if (!progressed && waiting < 0 && AnyAgentLive()) {
        return absl::InternalError("a running agent has no engine request");
      }
      if (!progressed && waiting >= 0) {
        engine::RequestUpdate u;
        if (streams_[waiting].stream->Next(u, kPollWait) == engine::RequestStream::Poll::kUpdate) {
          if (absl::Status s = Consume(waiting, u); !s.ok()) return s;
        }
      }
    }
    return absl::OkStatus();
  }

  // Once every agent has ended, the requests of stopped agents still owe
  // their final update (the engine ends an aborted sequence at its next
  // step): read them to the end, for their usage and so that nothing of
  // this run is left in the engine.
  absl::Status DrainAgentStreams() {
    for (size_t i = 0; i < streams_.size(); ++i) {
      if (streams_[i].aggregator) continue;
      if (absl::Status s = ConsumeUntil(static_cast<int>(i), /*until_first_token=*/false); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Consume(int stream_index, const engine::RequestUpdate& u) {
    Stream& s = streams_[stream_index];
    for (const engine::SequenceDelta& d : u.deltas) {
      if (d.index < 0 || d.index >= static_cast<int>(s.agents.size())) continue;
      Agent& a = *agents_[s.agents[d.index]];
      if (!a.live() || a.stream != stream_index) continue;  // stopped: its tail is ignored
      for (const engine::TokenOutput& t : d.tokens) {
        a.tokens.push_back(t.id);
        a.window->Add(t.confidence);
      }
      a.text += d.text;
      if (o_.stream_agent_text && !d.text.empty()) {
        ContemplateEvent e;
        e.kind = ContemplateEvent::Kind::kAgentText;
        e.agent = a.spec.index;
        e.text = d.text;
        sink_(e);
      }
      if (d.finish == engine::FinishReason::kAborted) {
        // Not stopped by this run (it ignores its stopped agents' tails):
        // cancelled, or the engine is shutting down.
        if (owner_.cancelled()) return absl::CancelledError("the request was cancelled");
        return absl::UnavailableError("the engine stopped the request (shutting down)");
      }
      if (d.finish != engine::FinishReason::kNone) {
        if (absl::Status st = OnAgentEnded(a, d.finish); !st.ok()) return st;
      }
    }
    s.usage = u.usage;
    if (u.done) {
      s.done = true;
      if (!u.status.ok()) return u.status;
    }
    return absl::OkStatus();
  }

  absl::Status OnAgentEnded(Agent& a, engine::FinishReason finish) {
    if (a.state == Agent::State::kRunning && o_.thinking_budget > 0 &&
        finish == engine::FinishReason::kLength &&
        !ExtractAnswer(a.text, o_.answer_format).found) {
      return ForceAnswer(a);
    }
    a.state = Agent::State::kFinished;
    AgentOutcome& out = a.outcome;
    out.text = a.text;
    out.tokens = static_cast<int>(a.tokens.size());
    out.finished = true;
    out.finish = finish;
    out.answer = ExtractAnswer(a.text, o_.answer_format);
    out.confidence = a.window->lowest_mean();
    ContemplateEvent e;
    e.kind = ContemplateEvent::Kind::kAgentFinished;
    e.agent = a.spec.index;
    e.answer = out.answer;
    e.confidence = out.confidence;
    e.tokens = out.tokens;
    e.finish = finish;
    sink_(e);
    if (confidence_) confidence_->OnAgentFinished(a.spec.index, out.confidence);
    if (consensus_) {
      consensus_->OnAgentFinished(a.spec.index, out.answer.found, out.answer.normalized);
      if (consensus_->ShouldStop()) StopAllLive(StopReason::kConsensus);
    }
    return absl::OkStatus();
  }

  // Budget forcing: the agent's reasoning so far plus a cue, as a new
  // request whose prompt starts with the agent's own tokens (so the prefix
  // cache serves its full blocks).
  absl::Status ForceAnswer(Agent& a) {
    const std::string cue = ForcedAnswerCue(o_.answer_format);
    engine::EngineRequest r;
    r.prompt = a.prompt;
    r.prompt.insert(r.prompt.end(), a.tokens.begin(), a.tokens.end());
    const std::vector<int32_t> cue_ids =
        client_.tokenizer().Encode(cue, /*add_special=*/false, /*parse_special=*/false);
    r.prompt.insert(r.prompt.end(), cue_ids.begin(), cue_ids.end());
    const int room = client_.context_length() - static_cast<int>(r.prompt.size());
    const int left = o_.max_tokens - static_cast<int>(a.tokens.size());
    r.max_tokens = std::min({kForcedAnswerTokens, room, left});
    a.phase_one_tokens = static_cast<int>(a.tokens.size());
    a.text += cue;
    a.outcome.forced_answer = true;
    if (r.max_tokens < 1) {
      return OnAgentEnded(a, engine::FinishReason::kLength);  // no room: judge what it wrote
    }
    r.sampling = {AgentSampling(a)};
    r.stop = o_.stop;
    r.confidence_window = o_.confidence_window;
    r.cache_salt = o_.cache_salt;
    absl::StatusOr<std::shared_ptr<engine::RequestStream>> st = Submit(std::move(r));
    if (!st.ok()) return st.status();
    a.state = Agent::State::kForcing;
    a.stream = static_cast<int>(streams_.size());
    a.sequence = 0;
    Stream stream;
    stream.stream = *st;
    stream.agents = {a.spec.index};
    streams_.push_back(std::move(stream));
    return absl::OkStatus();
  }

  void Stop(Agent& a, StopReason reason) {
    if (a.stream >= 0) {  // else its request has not been submitted yet
      Stream& s = streams_[a.stream];
      if (s.agents.size() == 1) {
        s.stream->Cancel();
      } else {
        client_.AbortSequence(s.stream->id(), a.sequence);
      }
    }
    a.state = Agent::State::kStopped;
    a.outcome.text = a.text;
    a.outcome.tokens = static_cast<int>(a.tokens.size());
    a.outcome.stopped = reason;
    a.outcome.confidence = a.window->lowest_mean();
    ContemplateEvent e;
    e.kind = ContemplateEvent::Kind::kAgentStopped;
    e.agent = a.spec.index;
    e.stop_reason = reason;
    e.tokens = a.outcome.tokens;
    sink_(e);
  }

  void StopAllLive(StopReason reason) {
    for (const auto& a : agents_) {
      if (a->live()) Stop(*a, reason);
    }
  }

  void ApplyConfidenceStop() {
    if (!confidence_ || !confidence_->calibrated()) return;
    for (const auto& a : agents_) {
      if (a->state != Agent::State::kRunning) continue;
      if (confidence_->ShouldAbort(a->window->mean(), static_cast<int>(a->tokens.size()))) {
        Stop(*a, StopReason::kLowConfidence);
      }
    }
  }

  // Submits `requests` as aggregator passes and reads them to the end.
  // Returns each request's generated tokens (with their logprobs) and text.
  struct PassOutput {
    std::vector<engine::TokenOutput> tokens;
    std::string text;
  };
  absl::StatusOr<std::vector<PassOutput>> RunPasses(std::vector<engine::EngineRequest> requests) {
    std::vector<int> indices;
    for (engine::EngineRequest& r : requests) {
      absl::StatusOr<std::shared_ptr<engine::RequestStream>> st = Submit(std::move(r));
      if (!st.ok()) return st.status();
      Stream s;
      s.stream = *st;
      s.aggregator = true;
      indices.push_back(static_cast<int>(streams_.size()));
      streams_.push_back(std::move(s));
    }
    std::vector<PassOutput> out(indices.size());
    for (size_t k = 0; k < indices.size(); ++k) {
      Stream& s = streams_[indices[k]];
      while (!s.done) {
        if (owner_.cancelled()) return absl::CancelledError("the request was cancelled");
        engine::RequestUpdate u;
        if (s.stream->Next(u, kPollWait) != engine::RequestStream::Poll::kUpdate) continue;
        for (const engine::SequenceDelta& d : u.deltas) {
          out[k].tokens.insert(out[k].tokens.end(), d.tokens.begin(), d.tokens.end());
          out[k].text += d.text;
        }
        s.usage = u.usage;
        if (u.done) {
          s.done = true;
          if (!u.status.ok()) return u.status;
        }
      }
    }
    return out;
  }

  std::vector<Candidate> Candidates() const {
    std::vector<Candidate> out;
    for (const auto& a : agents_) {
      if (a->state != Agent::State::kFinished) continue;
      Candidate c;
      c.agent = a->spec.index;
      c.has_answer = a->outcome.answer.found;
      c.answer = a->outcome.answer.normalized;
      c.confidence = a->outcome.confidence;
      c.tokens = a->outcome.tokens;
      out.push_back(std::move(c));
    }
    return out;
  }

  const AgentOutcome& OutcomeOf(int agent) const { return agents_[agent]->outcome; }

  void TakeVote(const VoteResult& v, ContemplateResult& r) const {
    r.has_answer = v.has_answer;
    r.normalized = v.answer;
    r.votes = v.tally;
    r.support = v.support;
    if (v.has_answer && v.representative_agent >= 0) {
      r.answer = OutcomeOf(v.representative_agent).answer.raw;
    }
  }

  absl::StatusOr<ContemplateResult> Aggregate() {
    ContemplateResult r;
    const std::vector<Candidate> candidates = Candidates();
    bool any_answer = false;
    for (const Candidate& c : candidates) any_answer = any_answer || c.has_answer;
    AggregatorKind kind = o_.aggregator;
    if (kind == AggregatorKind::kAuto) {
      kind = any_answer ? AggregatorKind::kMajority : AggregatorKind::kSynthesis;
    }
    // A vote or a verifier needs answers; synthesis does not.
    if ((kind == AggregatorKind::kVerifier || kind == AggregatorKind::kConfidence) && !any_answer) {
      kind = AggregatorKind::kSynthesis;
    }
    if (candidates.empty()) kind = AggregatorKind::kMajority;  // nothing to read: no answer
    r.aggregator = kind;
    const absl::Time aggregation_start = absl::Now();
    switch (kind) {
      case AggregatorKind::kAuto:
      case AggregatorKind::kMajority: {
        TakeVote(MajorityVote(candidates), r);
        r.confidence = r.support;
        break;
      }
      case AggregatorKind::kConfidence: {
        TakeVote(ConfidenceVote(candidates, o_.confidence_eta), r);
        r.confidence = r.support;
        break;
      }
      case AggregatorKind::kVerifier: {
        if (absl::Status s = Verify(candidates, r); !s.ok()) return s;
        break;
      }
      case AggregatorKind::kSynthesis: {
        if (absl::Status s = Synthesize(candidates, r); !s.ok()) return s;
        break;
      }
    }
    r.aggregation_time = absl::Now() - aggregation_start;
    Finish(r);
    return r;
  }

  absl::Status Verify(const std::vector<Candidate>& candidates, ContemplateResult& r) {
    const std::string question = QuestionText(o_.messages);
    const YesNoTokens yes_no = YesNoTokenIds(client_.tokenizer());
    std::vector<engine::EngineRequest> requests;
    std::vector<int> judged;
    for (const Candidate& c : candidates) {
      if (!c.has_answer) continue;
      absl::StatusOr<std::vector<int32_t>> ids = ChatPromptIds(
          client_, VerifierMessages(question, TruncateMiddle(OutcomeOf(c.agent).text,
                                                             kVerifierSolutionChars)));
      if (!ids.ok()) return ids.status();
      if (static_cast<int>(ids->size()) + 1 > client_.context_length()) continue;
      engine::EngineRequest req;
      req.prompt = *std::move(ids);
      req.max_tokens = 1;
      req.ignore_eos = true;  // the first token is reported whatever it is
      engine::SamplingParams s;
      s.logprobs = 20;
      req.sampling = {s};
      req.cache_salt = o_.cache_salt;
      requests.push_back(std::move(req));
      judged.push_back(c.agent);
    }
    absl::StatusOr<std::vector<PassOutput>> out = RunPasses(std::move(requests));
    if (!out.ok()) return out.status();
    ContemplateEvent e;
    e.kind = ContemplateEvent::Kind::kVerifierScores;
    absl::flat_hash_map<int, double> p_yes;
    for (size_t k = 0; k < judged.size(); ++k) {
      const std::vector<engine::TokenOutput>& t = (*out)[k].tokens;
      const double p = t.empty() ? 0.5 : VerifierYesProbability(t[0].top, yes_no.yes, yes_no.no);
      p_yes[judged[k]] = p;
      e.scores.push_back({judged[k], p});
    }
    sink_(e);
    // Each answer weighs the sum of its solutions' P(yes).
    std::vector<Candidate> weighted;
    for (const Candidate& c : candidates) {
      auto it = p_yes.find(c.agent);
      if (it == p_yes.end()) continue;
      Candidate w = c;
      w.confidence = it->second;
      weighted.push_back(std::move(w));
    }
    TakeVote(WeightedVote(weighted), r);
    double sum = 0.0;
    int n = 0;
    for (const VoteTally& t : r.votes) {
      if (t.answer != r.normalized) continue;
      for (int agent : t.agents) {
        sum += p_yes[agent];
        ++n;
      }
    }
    r.confidence = n > 0 ? sum / n : 0.0;
    return absl::OkStatus();
  }

  absl::Status Synthesize(const std::vector<Candidate>& candidates, ContemplateResult& r) {
    const std::string question = QuestionText(o_.messages);
    std::vector<std::string> texts;
    for (const Candidate& c : candidates) texts.push_back(OutcomeOf(c.agent).text);
    // Each solution gets an equal share of the context (about 3 characters
    // a token), halved until the prompt fits.
    const int context = client_.context_length();
    size_t per = std::max<size_t>(kMinSynthesisChars,
                                  static_cast<size_t>(std::max(0, context - o_.aggregator_max_tokens)) *
                                      3 / std::max<size_t>(1, texts.size()));
    per = std::min(per, kDefaultSynthesisCandidateChars);
    std::vector<int32_t> prompt;
    while (true) {
      absl::StatusOr<std::vector<int32_t>> ids =
          ChatPromptIds(client_, SynthesisMessages(question, texts, o_.answer_format, per));
      if (!ids.ok()) return ids.status();
      if (static_cast<int>(ids->size()) + 1 < context) {
        prompt = *std::move(ids);
        break;
      }
      if (per <= kMinSynthesisChars) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the synthesis prompt does not fit the model's context of ", context, " tokens"));
      }
      per = std::max(kMinSynthesisChars, per / 2);
    }
    engine::EngineRequest req;
    req.max_tokens = std::min(o_.aggregator_max_tokens,
                              context - static_cast<int>(prompt.size()));
    req.prompt = std::move(prompt);
    engine::SamplingParams s = o_.sampling;
    s.temperature = 0.0f;  // the aggregator writes its best, not a sample
    req.sampling = {s};
    req.stop = o_.stop;
    req.cache_salt = o_.cache_salt;
    std::vector<engine::EngineRequest> requests;
    requests.push_back(std::move(req));
    absl::StatusOr<std::vector<PassOutput>> out = RunPasses(std::move(requests));
    if (!out.ok()) return out.status();
    r.text = (*out)[0].text;
    const ExtractedAnswer answer = ExtractAnswer(r.text, o_.answer_format);
    // The agents' own votes, for the record.
    const VoteResult votes = MajorityVote(candidates);
    r.votes = votes.tally;
    r.has_answer = answer.found;
    r.answer = answer.raw;
    r.normalized = answer.normalized;
    int agree = 0;
    for (const Candidate& c : candidates) agree += c.has_answer && c.answer == answer.normalized;
    r.support = candidates.empty() ? 0.0 : static_cast<double>(agree) / candidates.size();
    r.confidence = r.support;
    return absl::OkStatus();
  }

  void Finish(ContemplateResult& r) {
    if (!streams_.empty()) r.usage.queue_time = streams_.front().usage.queue_time;
    for (const Stream& s : streams_) {
      r.usage.prompt_tokens += s.usage.prompt_tokens;
      r.usage.cached_prompt_tokens += s.usage.cached_prompt_tokens;
      (s.aggregator ? r.usage.aggregator_tokens : r.usage.agent_tokens) += s.usage.generated_tokens;
    }
    double finished_tokens = 0;
    int finished = 0;
    for (const auto& a : agents_) {
      if (a->state == Agent::State::kFinished) {
        finished_tokens += a->outcome.tokens;
        ++finished;
      }
    }
    const double mean = finished > 0 ? finished_tokens / finished : 0.0;
    for (const auto& a : agents_) {
      if (a->state == Agent::State::kStopped) {
        r.usage.saved_tokens_estimate += std::max(0, static_cast<int>(mean) - a->outcome.tokens);
      }
      r.agents.push_back(a->outcome);
    }
  }

  Contemplation& owner_;
  EngineClient& client_;
  const ContemplateOptions& o_;
  const Sink& sink_;
  std::vector<std::unique_ptr<Agent>> agents_;  // by agent index
  std::deque<Stream> streams_;  // a deque: references stay valid as streams are added
  std::optional<ConsensusStop> consensus_;
  std::optional<ConfidenceStop> confidence_;
};

absl::StatusOr<ContemplateResult> Contemplation::Run(const ContemplateOptions& options,
                                                     const Sink& sink) {
  Runner runner(*this, options, sink);
  return runner.Run();
}

}  // namespace conclave::orchestrator
