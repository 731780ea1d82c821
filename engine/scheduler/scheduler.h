// Continuous batching policy over sequences and the block manager: which
// sequences run in the next step and how many of their tokens. Pure policy:
// no model, no threads, unit-testable on its own.
//
// Each step:
//  1. Running sequences, oldest request first, each get their next tokens
//     (one for a decoding sequence, a chunk of the prompt for one still
//     prefilling) within the step's token budget. When the pool cannot hold
//     a sequence's next tokens, the newest running sequence is preempted by
//     recompute (its blocks are freed; it waits again with all of its tokens
//     and is prefilled anew, mostly from the prefix cache), so the oldest
//     request keeps priority.
//  2. Then waiting sequences (preempted ones and new requests, oldest
//     first) join while the token budget, the running-slot limit and the
//     pool allow; a long prompt is prefilled in chunks across steps, in the
//     same steps as other sequences decode.
// Not thread-safe: owned by the Engine's step loop.
#ifndef CONCLAVE_ENGINE_SCHEDULER_SCHEDULER_H_
#define CONCLAVE_ENGINE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv/block_manager.h"
#include "engine/scheduler/sequence.h"

namespace conclave::engine {

struct SchedulerConfig {
  int max_running_sequences = 64;  // running slots (a group of n takes n)
  int max_batched_tokens = 512;    // tokens per step, prefill and decode together
  int max_waiting_groups = 256;    // requests admitted but not started
};

// One sequence's part of a step: tokens [num_computed, num_computed + n).
struct ScheduledSequence {
  Sequence* seq = nullptr;
  int num_new_tokens = 0;
  bool want_logits = false;  // the chunk ends at the sequence's last token
};

struct SchedulerStep {
  std::vector<ScheduledSequence> scheduled;
  std::vector<std::pair<int, int>> copies;  // copy-on-write (src, dst) blocks
  std::vector<int64_t> preempted;           // sequence ids preempted this step
  int num_tokens() const;
  bool empty() const { return scheduled.empty(); }
};

struct SchedulerStats {
  int running_sequences = 0;
  int waiting_sequences = 0;
  int waiting_groups = 0;  // not yet started
  int64_t preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager& blocks);

  // Queues a group of `n` sequences sharing `prompt` (non-empty), each able to
  // grow to max_len positions. INVALID_ARGUMENT when n exceeds the running
  // limit or one sequence of max_len could never fit in the pool;
  // RESOURCE_EXHAUSTED when the waiting queue is full. Nothing changes on
  // error.
  absl::Status AddGroup(int64_t group_id, std::vector<int32_t> prompt, int n,
                        int max_len, uint64_t cache_salt);

  // Plans the next step and reserves its blocks. Empty when nothing can run.
  SchedulerStep Schedule();

  // After the step's forward pass: its tokens are computed; full blocks are
  // registered in the prefix cache.
  void OnStepComputed(const SchedulerStep& step);

  // Splits a leader whose prompt is now computed into its group's
  // sequences (the leader is the first); the others share its blocks.
  // Returns the group's sequences in index order.
  std::vector<Sequence*> Fork(Sequence& leader);

  // Appends a sampled token to a running sequence.
  void Append(Sequence& seq, int32_t token);

  // Removes a finished sequence, freeing its blocks.
  void Finish(int64_t seq_id);
  // Removes every sequence of the group (waiting or running), freeing their
  // blocks. Returns how many were removed.
  int AbortGroup(int64_t group_id);
  // Removes one sequence of a group. False when it does not exist (yet): a
  // leader that has not forked stands for its whole group.
  bool AbortSequence(int64_t group_id, int index);

  bool HasWork() const { return !running_.empty() || !waiting_.empty(); }
  bool HasGroup(int64_t group_id) const { return groups_.contains(group_id); }
  Sequence* Find(int64_t seq_id);
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return config_; }

  // Every block table that holds blocks (for BlockManager::CheckConsistency).
  std::vector<const BlockTable*> LiveTables() const;

 private:
  int RunningSlots() const;
  void Preempt(Sequence& seq);
  void InsertWaiting(Sequence* seq);  // keeps arrival order
  void Remove(Sequence* seq);

  const SchedulerConfig config_;
  BlockManager& blocks_;
  int64_t next_seq_id_ = 1;
  int64_t next_arrival_ = 0;
  absl::flat_hash_map<int64_t, std::unique_ptr<Sequence>> sequences_;
  absl::flat_hash_map<int64_t, std::vector<int64_t>> groups_;  // group -> sequence ids
  std::vector<Sequence*> running_;  // oldest arrival first
  std::deque<Sequence*> waiting_;   // oldest arrival first
  int waiting_groups_ = 0;          // leaders never started
  int64_t preemptions_ = 0;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SCHEDULER_SCHEDULER_H_
