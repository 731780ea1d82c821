#include "engine/scheduler/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::engine {

int SchedulerStep::num_tokens() const {
  int n = 0;
  for (const ScheduledSequence& s : scheduled) n += s.num_new_tokens;
  return n;
}

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager& blocks)
    : config_(config), blocks_(blocks) {
  CHECK(config.max_running_sequences >= 1 && config.max_batched_tokens >= 1 &&
        config.max_waiting_groups >= 0)
      << "scheduler limits must be positive";
}

absl::Status Scheduler::AddGroup(int64_t group_id, std::vector<int32_t> prompt, int n,
                                 int max_len, uint64_t cache_salt) {
  if (prompt.empty()) return absl::InvalidArgumentError("prompt has no tokens");
  if (n < 1 || n > config_.max_running_sequences) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n=", n, " sequences must be in [1, max_running_sequences=",
        config_.max_running_sequences, "]"));
  }
  if (max_len < static_cast<int>(prompt.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_len=", max_len, " is shorter than the prompt of ", prompt.size(), " tokens"));
  }
  const int blocks_needed = BlockManager::BlocksFor(max_len, blocks_.block_size());
  if (blocks_needed > blocks_.num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a sequence of ", max_len, " positions needs ", blocks_needed,
        " KV blocks; the pool has ", blocks_.num_blocks()));
  }
  if (groups_.contains(group_id)) {
    return absl::AlreadyExistsError(absl::StrCat("group ", group_id, " already queued"));
  }
  if (waiting_groups_ >= config_.max_waiting_groups) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "waiting queue is full (max_waiting_groups=", config_.max_waiting_groups, ")"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->id = next_seq_id_++;
  seq->group_id = group_id;
  seq->index = 0;
  seq->arrival = next_arrival_++;
  seq->prompt_len = static_cast<int>(prompt.size());
  seq->tokens = std::move(prompt);
  seq->max_len = max_len;
  seq->blocks.cache_salt = cache_salt;
  seq->pending_forks = n;
  Sequence* raw = seq.get();
  groups_[group_id].push_back(raw->id);
  sequences_[raw->id] = std::move(seq);
  InsertWaiting(raw);
  ++waiting_groups_;
  return absl::OkStatus();
}

int Scheduler::RunningSlots() const {
  int slots = 0;
  for (const Sequence* s : running_) slots += s->slots();
  return slots;
}

void Scheduler::InsertWaiting(Sequence* seq) {
  seq->status = SequenceStatus::kWaiting;
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), seq,
                             [](const Sequence* a, const Sequence* b) {
                               return a->arrival < b->arrival ||
                                      (a->arrival == b->arrival && a->index < b->index);
                             });
  waiting_.insert(it, seq);
}

void Scheduler::Preempt(Sequence& seq) {
  blocks_.Free(seq.blocks);
  seq.num_computed = 0;
  ++seq.num_preemptions;
  ++preemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), &seq));
  InsertWaiting(&seq);
}

SchedulerStep Scheduler::Schedule() {
  SchedulerStep step;
  int budget = config_.max_batched_tokens;

  // 1. Running sequences, oldest first. running_ is kept in arrival order, so
  // the newest not yet scheduled sequence is at the back.
  size_t i = 0;
  while (i < running_.size() && budget > 0) {
    Sequence& seq = *running_[i];
    const int n = std::min(seq.num_tokens() - seq.num_computed, budget);
    CHECK_GT(n, 0) << "running sequence " << seq.id << " has nothing to compute";
    bool preempted_self = false;
    while (blocks_.BlocksNeeded(seq.blocks, seq.num_computed, seq.num_computed + n) >
           blocks_.num_free_blocks()) {
      Sequence* victim = running_.back();
      if (victim == &seq) {
        step.preempted.push_back(seq.id);
        Preempt(seq);
        preempted_self = true;
        break;
      }
      step.preempted.push_back(victim->id);
      Preempt(*victim);
    }
    if (preempted_self) break;  // everything after it is newer and was preempted
    absl::Status s =
        blocks_.Reserve(seq.blocks, seq.num_computed, seq.num_computed + n, step.copies);
    CHECK(s.ok()) << "Reserve failed after BlocksNeeded said it fits: " << s;
    step.scheduled.push_back({&seq, n, seq.num_computed + n == seq.num_tokens()});
    budget -= n;
    ++i;
  }

  // 2. Waiting sequences, oldest first, unless this step had to preempt (the
  // pool is short; admitting more would only preempt again).
  int slots = RunningSlots();
  while (step.preempted.empty() && !waiting_.empty() && budget > 0) {
    Sequence& seq = *waiting_.front();
    if (slots + seq.slots() > config_.max_running_sequences) break;
    if (!blocks_.CanAllocate(seq.tokens, seq.blocks.cache_salt)) break;
    absl::StatusOr<int> cached = blocks_.Allocate(seq.tokens, seq.blocks);
    CHECK(cached.ok()) << "Allocate failed after CanAllocate: " << cached.status();
    waiting_.pop_front();
    if (!seq.started) {
      seq.started = true;
      --waiting_groups_;
    }
    seq.num_computed = *cached;
    seq.status = SequenceStatus::kRunning;
    running_.insert(std::upper_bound(running_.begin(), running_.end(), &seq,
                                     [](const Sequence* a, const Sequence* b) {
                                       return a->arrival < b->arrival ||
                                              (a->arrival == b->arrival && a->index < b->index);
                                     }),
                    &seq);
    slots += seq.slots();
    const int n = std::min(seq.num_tokens() - seq.num_computed, budget);
    step.scheduled.push_back({&seq, n, seq.num_computed + n == seq.num_tokens()});
    budget -= n;
  }
  return step;
}

void Scheduler::OnStepComputed(const SchedulerStep& step) {
  for (const ScheduledSequence& s : step.scheduled) {
    Sequence& seq = *s.seq;
    seq.num_computed += s.num_new_tokens;
    CHECK_LE(seq.num_computed, seq.num_tokens()) << "sequence " << seq.id;
    blocks_.Commit(seq.blocks, seq.tokens, seq.num_computed);
  }
}

std::vector<Sequence*> Scheduler::Fork(Sequence& leader) {
  CHECK(leader.status == SequenceStatus::kRunning && leader.num_computed == leader.num_tokens())
      << "fork of sequence " << leader.id << " before its prompt is computed";
  std::vector<Sequence*> out = {&leader};
  const int n = leader.pending_forks;
  leader.pending_forks = 1;
  std::vector<int64_t>& members = groups_[leader.group_id];
  auto pos = std::find(running_.begin(), running_.end(), &leader) + 1;
  for (int k = 1; k < n; ++k) {
    auto child = std::make_unique<Sequence>();
    child->id = next_seq_id_++;
    child->group_id = leader.group_id;
    child->index = k;
    child->arrival = leader.arrival;
    child->tokens = leader.tokens;
    child->prompt_len = leader.prompt_len;
    child->max_len = leader.max_len;
    child->num_computed = leader.num_computed;
    child->blocks.cache_salt = leader.blocks.cache_salt;
    blocks_.Fork(leader.blocks, child->blocks);
    child->status = SequenceStatus::kRunning;
    child->started = true;
    Sequence* raw = child.get();
    members.push_back(raw->id);
    sequences_[raw->id] = std::move(child);
    pos = running_.insert(pos, raw) + 1;
    out.push_back(raw);
  }
  return out;
}

void Scheduler::Append(Sequence& seq, int32_t token) {
  CHECK(seq.num_computed == seq.num_tokens())
      << "sequence " << seq.id << " sampled before its tokens were computed";
  CHECK_LT(seq.num_tokens(), seq.max_len) << "sequence " << seq.id << " past max_len";
  seq.tokens.push_back(token);
}

Sequence* Scheduler::Find(int64_t seq_id) {
  auto it = sequences_.find(seq_id);
  return it == sequences_.end() ? nullptr : it->second.get();
}

void Scheduler::Remove(Sequence* seq) {
  blocks_.Free(seq->blocks);
  if (seq->status == SequenceStatus::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
    if (!seq->started) --waiting_groups_;
  }
  auto g = groups_.find(seq->group_id);
  std::erase(g->second, seq->id);
  if (g->second.empty()) groups_.erase(g);
  sequences_.erase(seq->id);  // destroys *seq
}

void Scheduler::Finish(int64_t seq_id) {
  Sequence* seq = Find(seq_id);
  CHECK(seq != nullptr) << "Finish of unknown sequence " << seq_id;
  Remove(seq);
}

int Scheduler::AbortGroup(int64_t group_id) {
  auto g = groups_.find(group_id);
  if (g == groups_.end()) return 0;
  const std::vector<int64_t> ids = g->second;
  for (int64_t id : ids) Remove(Find(id));
  return static_cast<int>(ids.size());
}

bool Scheduler::AbortSequence(int64_t group_id, int index) {
  auto g = groups_.find(group_id);
  if (g == groups_.end()) return false;
  for (int64_t id : g->second) {
    Sequence* seq = Find(id);
    if (seq->index == index) {
      // A leader that still carries the whole group's prompt cannot go alone.
      if (seq->pending_forks > 1) return false;
      Remove(seq);
      return true;
    }
  }
  return false;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.running_sequences = static_cast<int>(running_.size());
  s.waiting_sequences = static_cast<int>(waiting_.size());
  s.waiting_groups = waiting_groups_;
  s.preemptions = preemptions_;
  return s;
}

std::vector<const BlockTable*> Scheduler::LiveTables() const {
  std::vector<const BlockTable*> out;
  for (const auto& [id, seq] : sequences_) out.push_back(&seq->blocks);
  return out;
}

}  // namespace conclave::engine
