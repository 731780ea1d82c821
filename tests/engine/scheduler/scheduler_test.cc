// Scheduler policy with no model: a fake "forward" marks tokens computed and
// every sequence that wants logits appends token 7.
#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::engine {
namespace {

std::vector<int32_t> Prompt(int n, int32_t first = 100) {
  std::vector<int32_t> p(n);
  std::iota(p.begin(), p.end(), first);
  return p;
}

// Runs one step as the engine would; finishes sequences that reach max_len.
SchedulerStep RunStep(Scheduler& s) {
  SchedulerStep step = s.Schedule();
  s.OnStepComputed(step);
  std::vector<int64_t> done;
  for (const ScheduledSequence& ss : step.scheduled) {
    if (!ss.want_logits) continue;
    std::vector<Sequence*> members = {ss.seq};
    if (ss.seq->pending_forks > 1) members = s.Fork(*ss.seq);
    for (Sequence* m : members) {
      s.Append(*m, 7);
      if (m->num_tokens() >= m->max_len) done.push_back(m->id);
    }
  }
  for (int64_t id : done) s.Finish(id);
  return step;
}

void ExpectIdle(const Scheduler& s, const BlockManager& b) {
  EXPECT_FALSE(s.HasWork());
  EXPECT_TRUE(b.CheckConsistency(s.LiveTables()).ok());
  EXPECT_EQ(b.stats().used_blocks, 0);
}

TEST(SchedulerTest, ChunksALongPromptUnderTheTokenBudget) {
  BlockManager blocks(16, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 4}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(10), 1, 12, 0).ok());
  std::vector<int> chunks;
  std::vector<bool> logits;
  for (int i = 0; i < 3; ++i) {
    SchedulerStep step = RunStep(s);
    ASSERT_EQ(step.scheduled.size(), 1u);
    chunks.push_back(step.scheduled[0].num_new_tokens);
    logits.push_back(step.scheduled[0].want_logits);
  }
  EXPECT_EQ(chunks, (std::vector<int>{4, 4, 2}));
  EXPECT_EQ(logits, (std::vector<bool>{false, false, true}));
  RunStep(s);  // decodes token 11; the sequence reaches max_len 12
  RunStep(s);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, MixesOneRequestsPrefillWithAnothersDecodeInOneStep) {
  BlockManager blocks(32, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 8}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(3), 1, 20, 0).ok());
  RunStep(s);  // prefill of request 1
  ASSERT_TRUE(s.AddGroup(2, Prompt(20, 500), 1, 30, 0).ok());
  SchedulerStep step = RunStep(s);
  ASSERT_EQ(step.scheduled.size(), 2u);
  EXPECT_EQ(step.scheduled[0].seq->group_id, 1);
  EXPECT_EQ(step.scheduled[0].num_new_tokens, 1);  // decode
  EXPECT_EQ(step.scheduled[1].seq->group_id, 2);
  EXPECT_EQ(step.scheduled[1].num_new_tokens, 7);  // the rest of the budget
  EXPECT_FALSE(step.scheduled[1].want_logits);
  s.AbortGroup(1);
  s.AbortGroup(2);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, PrefillsAGroupsPromptOnceAndForksItsSequences) {
  BlockManager blocks(32, 4);
  Scheduler s({.max_running_sequences = 8, .max_batched_tokens = 64}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(10), 4, 14, 0).ok());
  SchedulerStep first = RunStep(s);
  ASSERT_EQ(first.scheduled.size(), 1u);  // the prompt, once
  EXPECT_EQ(first.scheduled[0].num_new_tokens, 10);
  EXPECT_EQ(s.stats().running_sequences, 4);
  // 3 blocks of prompt (the last partial) shared by all four.
  EXPECT_EQ(blocks.stats().used_blocks, 3);
  SchedulerStep second = RunStep(s);
  ASSERT_EQ(second.scheduled.size(), 4u);
  // Three of the four copy the shared partial block; the last writes in place.
  EXPECT_EQ(second.copies.size(), 3u);
  EXPECT_EQ(blocks.stats().used_blocks, 2 + 4);
  while (s.HasWork()) RunStep(s);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, AGroupTakesOneRunningSlotPerSequence) {
  BlockManager blocks(64, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 64}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(4), 3, 8, 0).ok());
  ASSERT_TRUE(s.AddGroup(2, Prompt(4, 300), 2, 8, 0).ok());
  SchedulerStep step = RunStep(s);
  ASSERT_EQ(step.scheduled.size(), 1u);  // 3 + 2 slots > 4: group 2 waits
  EXPECT_EQ(s.stats().waiting_groups, 1);
  while (s.HasWork()) RunStep(s);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, RejectsBeyondTheWaitingQueueAndImpossibleRequests) {
  BlockManager blocks(8, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 16, .max_waiting_groups = 2},
              blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(4), 1, 8, 0).ok());
  ASSERT_TRUE(s.AddGroup(2, Prompt(4), 1, 8, 0).ok());
  EXPECT_EQ(s.AddGroup(3, Prompt(4), 1, 8, 0).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.AddGroup(4, Prompt(4), 5, 8, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.AddGroup(5, Prompt(4), 1, 33, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.AddGroup(6, {}, 1, 8, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.stats().waiting_groups, 2);
  RunStep(s);  // both start: the queue has room again
  EXPECT_TRUE(s.AddGroup(3, Prompt(4), 1, 8, 0).ok());
  s.AbortGroup(1);
  s.AbortGroup(2);
  s.AbortGroup(3);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, PreemptsTheNewestRequestWhenBlocksRunOut) {
  // 6 blocks of 4; three sequences that each grow to 12 positions (3 blocks)
  // cannot all run to the end together.
  BlockManager blocks(6, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 16}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(4, 100), 1, 12, 0).ok());
  ASSERT_TRUE(s.AddGroup(2, Prompt(4, 200), 1, 12, 0).ok());
  ASSERT_TRUE(s.AddGroup(3, Prompt(4, 300), 1, 12, 0).ok());
  std::vector<int64_t> preempted;
  int steps = 0;
  while (s.HasWork() && steps < 100) {
    SchedulerStep step = RunStep(s);
    for (int64_t id : step.preempted) preempted.push_back(s.Find(id) ? s.Find(id)->group_id : -1);
    EXPECT_TRUE(blocks.CheckConsistency(s.LiveTables()).ok());
    ++steps;
  }
  ASSERT_FALSE(preempted.empty());
  // Group 1 (the oldest) is never the victim.
  EXPECT_EQ(std::count(preempted.begin(), preempted.end(), 1), 0);
  EXPECT_GE(s.stats().preemptions, 1);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, APreemptedSequenceIsRecomputedWithAllItsTokens) {
  BlockManager blocks(4, 4);
  Scheduler s({.max_running_sequences = 4, .max_batched_tokens = 16}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(4, 100), 1, 12, 0).ok());
  ASSERT_TRUE(s.AddGroup(2, Prompt(3, 200), 1, 12, 0).ok());
  bool resumed = false;
  for (int i = 0; i < 40 && s.HasWork(); ++i) {
    SchedulerStep step = s.Schedule();
    for (const ScheduledSequence& ss : step.scheduled) {
      const Sequence& q = *ss.seq;
      if (q.group_id == 2 && q.num_preemptions > 0 && !resumed) {
        resumed = true;
        // It starts again from a block boundary (what the prefix cache still
        // holds, or 0) and computes the rest of its prompt and generated
        // tokens before it samples again.
        EXPECT_GT(q.num_tokens(), q.prompt_len);
        EXPECT_EQ(q.num_computed % 4, 0);
        EXPECT_EQ(q.num_computed + ss.num_new_tokens, q.num_tokens());
        EXPECT_TRUE(ss.want_logits);
      }
    }
    s.OnStepComputed(step);
    std::vector<int64_t> done;
    for (const ScheduledSequence& ss : step.scheduled) {
      if (!ss.want_logits) continue;
      s.Append(*ss.seq, 7);
      if (ss.seq->num_tokens() >= ss.seq->max_len) done.push_back(ss.seq->id);
    }
    for (int64_t id : done) s.Finish(id);
  }
  EXPECT_TRUE(resumed) << "group 2 was never preempted and resumed";
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, AbortFreesEverySequenceOfTheGroupAtOnce) {
  BlockManager blocks(32, 4);
  Scheduler s({.max_running_sequences = 8, .max_batched_tokens = 64}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(9), 4, 40, 0).ok());
  RunStep(s);
  RunStep(s);
  EXPECT_GT(blocks.stats().used_blocks, 0);
  EXPECT_EQ(s.AbortGroup(1), 4);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, AbortingOneSequenceKeepsItsSiblings) {
  BlockManager blocks(32, 4);
  Scheduler s({.max_running_sequences = 8, .max_batched_tokens = 64}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(9), 3, 40, 0).ok());
  EXPECT_FALSE(s.AbortSequence(1, 2));  // not forked yet
  RunStep(s);
  EXPECT_TRUE(s.AbortSequence(1, 2));
  EXPECT_EQ(s.stats().running_sequences, 2);
  EXPECT_TRUE(blocks.CheckConsistency(s.LiveTables()).ok());
  s.AbortGroup(1);
  ExpectIdle(s, blocks);
}

TEST(SchedulerTest, ASecondRequestWithTheSamePromptStartsFromTheCache) {
  BlockManager blocks(32, 4);
  Scheduler s({.max_running_sequences = 8, .max_batched_tokens = 64}, blocks);
  ASSERT_TRUE(s.AddGroup(1, Prompt(10), 1, 11, 0).ok());
  while (s.HasWork()) RunStep(s);
  ASSERT_TRUE(s.AddGroup(2, Prompt(10), 1, 11, 0).ok());
  SchedulerStep step = s.Schedule();
  ASSERT_EQ(step.scheduled.size(), 1u);
  EXPECT_EQ(step.scheduled[0].seq->num_computed, 8);  // two full blocks cached
  EXPECT_EQ(step.scheduled[0].num_new_tokens, 2);
  s.OnStepComputed(step);
  s.AbortGroup(2);
  // Under another salt, nothing is shared.
  ASSERT_TRUE(s.AddGroup(3, Prompt(10), 1, 11, 99).ok());
  step = s.Schedule();
  EXPECT_EQ(step.scheduled[0].seq->num_computed, 0);
  s.OnStepComputed(step);
  s.AbortGroup(3);
  ExpectIdle(s, blocks);
}

}  // namespace
}  // namespace conclave::engine
