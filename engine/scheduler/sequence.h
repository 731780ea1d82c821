// A sequence: one stream of tokens (a prompt, then what is generated after
// it) with its KV blocks and how far its KV has been computed. A request of
// n samples is a group whose prompt lives in one leader sequence until the
// prompt is prefilled; the leader then forks into n sequences that share the
// prompt's blocks.
// Owned by the Scheduler; not thread-safe.
#ifndef CONCLAVE_ENGINE_SCHEDULER_SEQUENCE_H_
#define CONCLAVE_ENGINE_SCHEDULER_SEQUENCE_H_

#include <cstdint>
#include <vector>

#include "engine/kv/block_manager.h"

namespace conclave::engine {

enum class SequenceStatus { kWaiting, kRunning };

struct Sequence {
  int64_t id = 0;
  int64_t group_id = 0;
  int index = 0;         // 0..n-1 within its group (the leader is 0)
  int64_t arrival = 0;   // the group's submission order: lower is older
  std::vector<int32_t> tokens;  // prompt, then generated ids
  int prompt_len = 0;
  int max_len = 0;       // prompt_len + max new tokens: the most positions it can need
  // Tokens whose KV is in the cache. tokens[num_computed..] are computed by
  // the next steps (a decoding sequence has exactly one: its last sample).
  int num_computed = 0;
  BlockTable blocks;
  SequenceStatus status = SequenceStatus::kWaiting;
  // > 1 on a group's leader whose prompt is not yet prefilled: the number of
  // sequences it becomes. Such a leader holds that many running slots.
  int pending_forks = 1;
  int num_preemptions = 0;
  bool started = false;  // scheduled at least once

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_generated() const { return num_tokens() - prompt_len; }
  int slots() const { return pending_forks; }
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SCHEDULER_SEQUENCE_H_
