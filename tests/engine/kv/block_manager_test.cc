#include "engine/kv/block_manager.h"

#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kBlockSize = 4;
constexpr int kNumBlocks = 8;

// start, start + 1, ..., start + n - 1.
std::vector<int32_t> Tokens(int n, int32_t start = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Allocates `tokens` into `table`, then marks all of them computed.
int Prefill(BlockManager& m, BlockTable& table, const std::vector<int32_t>& tokens) {
  absl::StatusOr<int> cached = m.Allocate(tokens, table);
  EXPECT_TRUE(cached.ok()) << cached.status();
  m.Commit(table, tokens, static_cast<int>(tokens.size()));
  return cached.value_or(-1);
}

void ExpectSameStats(const BlockManagerStats& a, const BlockManagerStats& b) {
  EXPECT_EQ(a.num_blocks, b.num_blocks);
  EXPECT_EQ(a.used_blocks, b.used_blocks);
  EXPECT_EQ(a.used_token_slots, b.used_token_slots);
  EXPECT_EQ(a.cached_blocks, b.cached_blocks);
  EXPECT_EQ(a.cached_free_blocks, b.cached_free_blocks);
  EXPECT_EQ(a.free_blocks, b.free_blocks);
  EXPECT_EQ(a.prefix_queries, b.prefix_queries);
  EXPECT_EQ(a.prefix_hits, b.prefix_hits);
  EXPECT_EQ(a.evictions, b.evictions);
  EXPECT_EQ(a.copy_on_writes, b.copy_on_writes);
}

TEST(BlockManagerTest, BlocksForRoundsUp) {
  EXPECT_EQ(BlockManager::BlocksFor(0, 4), 0);
  EXPECT_EQ(BlockManager::BlocksFor(1, 4), 1);
  EXPECT_EQ(BlockManager::BlocksFor(4, 4), 1);
  EXPECT_EQ(BlockManager::BlocksFor(5, 4), 2);
}

TEST(BlockManagerTest, AllocateAndFreeReturnEveryBlock) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a;
  absl::StatusOr<int> cached = m.Allocate(Tokens(9), a);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 0);
  EXPECT_EQ(a.blocks.size(), 3u);
  EXPECT_TRUE(a.hashes.empty());
  EXPECT_EQ(m.stats().used_blocks, 3);
  EXPECT_EQ(m.num_free_blocks(), 5);
  for (int32_t b : a.blocks) EXPECT_EQ(m.ref_count(b), 1);

  m.Free(a);
  EXPECT_TRUE(a.blocks.empty());
  EXPECT_EQ(m.stats().used_blocks, 0);
  EXPECT_EQ(m.num_free_blocks(), kNumBlocks);
  EXPECT_TRUE(m.CheckConsistency({}).ok());
}

TEST(BlockManagerTest, AnEmptyPromptTakesNoBlocks) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a;
  absl::StatusOr<int> cached = m.Allocate({}, a);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 0);
  EXPECT_TRUE(a.blocks.empty());
  EXPECT_EQ(m.stats().prefix_queries, 0);
}

TEST(BlockManagerTest, ASecondIdenticalPromptReusesTheCommittedFullBlocks) {
  BlockManager m(kNumBlocks, kBlockSize);
  const std::vector<int32_t> prompt = Tokens(10);  // two full blocks and two tokens
  BlockTable a, b;
  EXPECT_EQ(Prefill(m, a, prompt), 0);
  EXPECT_EQ(a.hashes.size(), 2u);
  EXPECT_EQ(m.stats().cached_blocks, 2);

  absl::StatusOr<int> cached = m.Allocate(prompt, b);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 8);
  ASSERT_EQ(b.blocks.size(), 3u);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  EXPECT_NE(b.blocks[2], a.blocks[2]);
  EXPECT_EQ(b.hashes, a.hashes);
  EXPECT_EQ(m.ref_count(a.blocks[0]), 2);
  EXPECT_EQ(m.ref_count(a.blocks[2]), 1);
  const BlockManagerStats s = m.stats();
  EXPECT_EQ(s.prefix_queries, 4);
  EXPECT_EQ(s.prefix_hits, 2);
  EXPECT_EQ(s.used_blocks, 4);
  EXPECT_TRUE(m.CheckConsistency({&a, &b}).ok());
}

TEST(BlockManagerTest, APromptOfWholeBlocksLeavesItsLastBlockToCompute) {
  BlockManager m(kNumBlocks, kBlockSize);
  const std::vector<int32_t> prompt = Tokens(8);
  BlockTable a, b;
  Prefill(m, a, prompt);
  EXPECT_EQ(m.stats().cached_blocks, 2);

  absl::StatusOr<int> cached = m.Allocate(prompt, b);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 4);  // the last token's logits are needed
  ASSERT_EQ(b.blocks.size(), 2u);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_NE(b.blocks[1], a.blocks[1]);
  EXPECT_EQ(b.hashes.size(), 1u);
  EXPECT_EQ(m.stats().prefix_queries, 2);
  EXPECT_EQ(m.stats().prefix_hits, 1);
}

TEST(BlockManagerTest, ADifferentPromptMisses) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  Prefill(m, a, Tokens(9));
  std::vector<int32_t> other = Tokens(9);
  other[0] = 100;
  absl::StatusOr<int> cached = m.Allocate(other, b);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 0);
  EXPECT_EQ(m.stats().prefix_hits, 0);
  EXPECT_EQ(m.stats().used_blocks, 6);
}

TEST(BlockManagerTest, DifferentCacheSaltsNeverShareBlocks) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b, c;
  a.cache_salt = 1;
  b.cache_salt = 2;
  c.cache_salt = 1;
  Prefill(m, a, Tokens(9));
  EXPECT_EQ(Prefill(m, b, Tokens(9)), 0);
  EXPECT_NE(b.hashes[0], a.hashes[0]);
  EXPECT_EQ(Prefill(m, c, Tokens(9)), 8);
  EXPECT_EQ(c.blocks[0], a.blocks[0]);
  EXPECT_EQ(m.stats().prefix_hits, 2);
}

TEST(BlockManagerTest, EqualHashesWithDifferentTokensAreAMissNotAWrongHit) {
  BlockManager m(kNumBlocks, kBlockSize,
                 [](uint64_t, uint64_t, absl::Span<const int32_t>) -> uint64_t { return 42; });
  BlockTable a, b, c;
  Prefill(m, a, Tokens(9));
  // Every block hashes to 42: only a's first block could be registered.
  EXPECT_EQ(m.stats().cached_blocks, 1);

  EXPECT_EQ(Prefill(m, b, Tokens(9, 100)), 0);
  for (int32_t block : b.blocks) EXPECT_EQ(m.ref_count(block), 1);
  EXPECT_EQ(m.stats().prefix_hits, 0);

  EXPECT_EQ(Prefill(m, c, Tokens(9)), 4);
  EXPECT_EQ(c.blocks[0], a.blocks[0]);
  EXPECT_NE(c.blocks[1], a.blocks[1]);
  EXPECT_TRUE(m.CheckConsistency({&a, &b, &c}).ok());
}

TEST(BlockManagerTest, ACollisionInAnEarlierBlockCannotLeakIntoALaterOne) {
  // Ignores each block's first token, so [1 2 3 4] and [9 2 3 4] collide.
  BlockManager m(kNumBlocks, kBlockSize,
                 [](uint64_t parent, uint64_t salt, absl::Span<const int32_t> tokens) {
                   return DefaultBlockHash(parent, salt, tokens.subspan(1));
                 });
  BlockTable x, a, b;
  Prefill(m, x, {1, 2, 3, 4, 0});
  // a's first block collides with x's and stays private; its second block
  // (computed after [9 2 3 4]) must not be found after [1 2 3 4].
  EXPECT_EQ(Prefill(m, a, {9, 2, 3, 4, 5, 6, 7, 8, 0}), 0);
  EXPECT_EQ(m.stats().cached_blocks, 1);
  EXPECT_EQ(Prefill(m, b, {1, 2, 3, 4, 5, 6, 7, 8, 0}), 4);
  EXPECT_EQ(b.blocks[0], x.blocks[0]);
  EXPECT_NE(b.blocks[1], a.blocks[1]);
  // b's second block is now the one cached after [1 2 3 4].
  EXPECT_EQ(m.stats().cached_blocks, 2);
}

TEST(BlockManagerTest, ACachedBlockIsReusedOnlyAfterTheBlockItWasComputedAfter) {
  // Ignores the parent of every block but the first: [5 6 7 8] hashes the
  // same after [1 2 3 4] and after [9 9 9 9].
  BlockManager m(kNumBlocks, kBlockSize,
                 [](uint64_t parent, uint64_t salt, absl::Span<const int32_t> tokens) {
                   return DefaultBlockHash(parent == 0 ? 0 : 1, salt, tokens);
                 });
  BlockTable x, y, z;
  Prefill(m, x, {1, 2, 3, 4, 5, 6, 7, 8, 0});
  Prefill(m, y, {9, 9, 9, 9, 0});
  EXPECT_EQ(m.stats().cached_blocks, 3);
  EXPECT_EQ(Prefill(m, z, {9, 9, 9, 9, 5, 6, 7, 8, 0}), 4);
  EXPECT_EQ(z.blocks[0], y.blocks[0]);
  EXPECT_NE(z.blocks[1], x.blocks[1]);
}

TEST(BlockManagerTest, TheSameBlockAfterADifferentFirstBlockHashesDifferently) {
  BlockManager m(kNumBlocks, kBlockSize);
  const std::vector<int32_t> second = {5, 6, 7, 8, 0};
  BlockTable a, b, c;
  Prefill(m, a, Concat({1, 2, 3, 4}, second));
  EXPECT_EQ(Prefill(m, b, Concat({9, 9, 9, 9}, second)), 0);
  ASSERT_EQ(b.hashes.size(), 2u);
  EXPECT_NE(b.hashes[1], a.hashes[1]);
  EXPECT_EQ(m.stats().cached_blocks, 4);
  EXPECT_EQ(Prefill(m, c, Concat({9, 9, 9, 9}, second)), 8);
  EXPECT_EQ(c.blocks[1], b.blocks[1]);
}

TEST(BlockManagerTest, ABlockIsReusableOnlyOnceCommitted) {
  BlockManager m(kNumBlocks, kBlockSize);
  const std::vector<int32_t> prompt = Tokens(9);
  BlockTable a, b, c;
  ASSERT_TRUE(m.Allocate(prompt, a).ok());
  absl::StatusOr<int> cached = m.Allocate(prompt, b);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 0);

  m.Commit(a, prompt, 6);  // a's first block is computed, its second is not full yet
  EXPECT_EQ(a.hashes.size(), 1u);
  cached = m.Allocate(prompt, c);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 4);
  EXPECT_EQ(c.blocks[0], a.blocks[0]);
}

TEST(BlockManagerTest, AHashAlreadyCachedLeavesTheSecondCopyPrivate) {
  BlockManager m(kNumBlocks, kBlockSize);
  const std::vector<int32_t> prompt = Tokens(9);
  BlockTable a, b;
  ASSERT_TRUE(m.Allocate(prompt, a).ok());
  ASSERT_TRUE(m.Allocate(prompt, b).ok());  // both miss: neither is computed
  m.Commit(a, prompt, 9);
  m.Commit(b, prompt, 9);
  EXPECT_EQ(b.hashes, a.hashes);
  EXPECT_EQ(m.stats().cached_blocks, 2);
  m.Free(b);
  EXPECT_EQ(m.stats().cached_free_blocks, 0);  // b's copies went back as plain free blocks
  EXPECT_TRUE(m.CheckConsistency({&a}).ok());
}

TEST(BlockManagerTest, ForkedSequencesShareEveryBlock) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  a.cache_salt = 7;
  Prefill(m, a, Tokens(10));
  m.Fork(a, b);
  EXPECT_EQ(b.blocks, a.blocks);
  EXPECT_EQ(b.hashes, a.hashes);
  EXPECT_EQ(b.cache_salt, 7u);
  for (int32_t block : a.blocks) EXPECT_EQ(m.ref_count(block), 2);
  EXPECT_EQ(m.stats().used_blocks, 3);
  EXPECT_TRUE(m.CheckConsistency({&a, &b}).ok());

  m.Free(a);
  for (int32_t block : b.blocks) EXPECT_EQ(m.ref_count(block), 1);
  m.Free(b);
  EXPECT_EQ(m.stats().used_blocks, 0);
}

TEST(BlockManagerTest, ForkedSequencesShareThePromptUntilOneWrites) {
  BlockManager m(kNumBlocks, kBlockSize);
  std::vector<int32_t> prompt = Tokens(10);  // positions 8, 9 in the shared last block
  BlockTable a, b;
  Prefill(m, a, prompt);
  m.Fork(a, b);
  const std::vector<int32_t> shared = a.blocks;

  std::vector<std::pair<int, int>> copies;
  EXPECT_EQ(m.BlocksNeeded(a, 10, 11), 1);
  ASSERT_TRUE(m.Reserve(a, 10, 11, copies).ok());
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].first, shared[2]);
  EXPECT_EQ(copies[0].second, a.blocks[2]);
  EXPECT_NE(a.blocks[2], shared[2]);
  EXPECT_EQ(a.blocks[0], shared[0]);
  EXPECT_EQ(a.blocks[1], shared[1]);
  EXPECT_EQ(m.ref_count(shared[0]), 2);  // full prompt blocks stay shared
  EXPECT_EQ(m.ref_count(shared[2]), 1);
  EXPECT_EQ(m.stats().copy_on_writes, 1);

  // b now holds the old last block alone and writes into it in place.
  copies.clear();
  EXPECT_EQ(m.BlocksNeeded(b, 10, 11), 0);
  ASSERT_TRUE(m.Reserve(b, 10, 11, copies).ok());
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(b.blocks, shared);
  EXPECT_EQ(m.stats().copy_on_writes, 1);
  EXPECT_TRUE(m.CheckConsistency({&a, &b}).ok());
}

TEST(BlockManagerTest, AWriteIntoASharedEmptyBlockTakesAFreshOneWithoutACopy) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  std::vector<std::pair<int, int>> copies;
  Prefill(m, a, Tokens(8));
  ASSERT_TRUE(m.Reserve(a, 8, 12, copies).ok());  // a block ahead, nothing in it yet
  ASSERT_EQ(a.blocks.size(), 3u);
  m.Fork(a, b);
  EXPECT_EQ(m.BlocksNeeded(a, 8, 9), 1);
  ASSERT_TRUE(m.Reserve(a, 8, 9, copies).ok());
  EXPECT_TRUE(copies.empty());
  EXPECT_NE(a.blocks[2], b.blocks[2]);
  EXPECT_EQ(m.ref_count(b.blocks[2]), 1);
  EXPECT_EQ(m.stats().copy_on_writes, 0);
  EXPECT_TRUE(m.CheckConsistency({&a, &b}).ok());
}

TEST(BlockManagerTest, ReserveAppendsBlocksOnlyWhenTheTableIsFull) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a;
  std::vector<std::pair<int, int>> copies;
  Prefill(m, a, Tokens(6));
  EXPECT_EQ(m.BlocksNeeded(a, 6, 8), 0);
  ASSERT_TRUE(m.Reserve(a, 6, 8, copies).ok());
  EXPECT_EQ(a.blocks.size(), 2u);
  EXPECT_EQ(m.BlocksNeeded(a, 8, 17), 3);
  ASSERT_TRUE(m.Reserve(a, 8, 17, copies).ok());
  EXPECT_EQ(a.blocks.size(), 5u);
  EXPECT_TRUE(copies.empty());
}

TEST(BlockManagerTest, UsedTokenSlotsCountReservedPositionsAndSharedBlocksOnce) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  std::vector<std::pair<int, int>> copies;
  ASSERT_TRUE(m.Allocate(Tokens(6), a).ok());
  EXPECT_EQ(m.stats().block_size, kBlockSize);
  EXPECT_EQ(m.stats().used_blocks, 2);
  EXPECT_EQ(m.stats().used_token_slots, 6);  // the second block holds 2 of 4
  ASSERT_TRUE(m.Reserve(a, 6, 7, copies).ok());
  EXPECT_EQ(m.stats().used_token_slots, 7);

  m.Fork(a, b);  // shares both blocks: nothing new is held
  EXPECT_EQ(m.stats().used_token_slots, 7);
  ASSERT_TRUE(m.Reserve(b, 7, 8, copies).ok());  // copy-on-write of the partial block
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(m.stats().used_token_slots, 4 + 3 + 4);
  EXPECT_TRUE(m.CheckConsistency({&a, &b}).ok());

  m.Free(a);  // its first block stays held by b
  EXPECT_EQ(m.stats().used_token_slots, 4 + 4);
  m.Free(b);
  EXPECT_EQ(m.stats().used_token_slots, 0);
  EXPECT_TRUE(m.CheckConsistency({}).ok());
}

TEST(BlockManagerTest, CachedBlocksCountTheirSlotsOnlyWhileHeld) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  Prefill(m, a, Tokens(9));
  EXPECT_EQ(m.stats().used_token_slots, 9);
  m.Free(a);  // two full blocks stay cached, unheld
  EXPECT_EQ(m.stats().cached_blocks, 2);
  EXPECT_EQ(m.stats().used_token_slots, 0);
  absl::StatusOr<int> cached = m.Allocate(Tokens(9), b);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 8);
  EXPECT_EQ(m.stats().used_token_slots, 9);
  EXPECT_TRUE(m.CheckConsistency({&b}).ok());
}

TEST(BlockManagerTest, CachedFreeBlocksAreEvictedLeastRecentlyFreedFirst) {
  BlockManager m(kNumBlocks, kBlockSize);
  // Four prompts of two full blocks each fill the pool; freed, all stay cached.
  BlockTable t[4];
  for (int i = 0; i < 4; ++i) Prefill(m, t[i], Tokens(8, 100 * i));
  EXPECT_THAT(t[0].blocks, ElementsAre(0, 1));
  EXPECT_THAT(t[1].blocks, ElementsAre(2, 3));
  for (BlockTable& table : t) m.Free(table);
  BlockManagerStats s = m.stats();
  EXPECT_EQ(s.cached_blocks, 8);
  EXPECT_EQ(s.cached_free_blocks, 8);
  EXPECT_EQ(s.free_blocks, 8);
  EXPECT_EQ(s.used_blocks, 0);

  // A sequence's last block is freed (and so evicted) before its first.
  BlockTable e;
  ASSERT_TRUE(m.Allocate(Tokens(8, 1000), e).ok());
  EXPECT_THAT(e.blocks, ElementsAre(1, 0));
  EXPECT_EQ(m.stats().evictions, 2);
  EXPECT_EQ(m.stats().cached_blocks, 6);

  // The second prompt's first block is still cached; its second is next in line.
  BlockTable again1;
  absl::StatusOr<int> cached = m.Allocate(Tokens(8, 100), again1);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 4);
  EXPECT_THAT(again1.blocks, ElementsAre(2, 3));
  EXPECT_EQ(m.stats().evictions, 3);

  // The first prompt's blocks were evicted: no hit.
  BlockTable again0;
  cached = m.Allocate(Tokens(8, 0), again0);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 0);
  EXPECT_THAT(again0.blocks, ElementsAre(5, 4));
  EXPECT_TRUE(m.CheckConsistency({&e, &again1, &again0}).ok());
}

TEST(BlockManagerTest, ExhaustionIsResourceExhaustedAndChangesNothing) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  Prefill(m, a, Tokens(21));  // six blocks
  const BlockManagerStats before = m.stats();

  absl::StatusOr<int> cached = m.Allocate(Tokens(13, 100), b);
  EXPECT_EQ(cached.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(cached.status().message(), HasSubstr("4 fresh blocks"));
  EXPECT_THAT(cached.status().message(), HasSubstr("only 2"));
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_TRUE(b.hashes.empty());
  ExpectSameStats(m.stats(), before);

  // A prompt that would hit a's blocks is counted as a query only on success.
  cached = m.Allocate(Concat(Tokens(20), Tokens(12, 50)), b);
  EXPECT_EQ(cached.status().code(), absl::StatusCode::kResourceExhausted);
  ExpectSameStats(m.stats(), before);

  const std::vector<int32_t> blocks = a.blocks;
  std::vector<std::pair<int, int>> copies;
  absl::Status s = m.Reserve(a, 21, 33, copies);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("needs 3 blocks, only 2"));
  EXPECT_EQ(a.blocks, blocks);
  EXPECT_TRUE(copies.empty());
  ExpectSameStats(m.stats(), before);
  EXPECT_TRUE(m.CheckConsistency({&a}).ok());
}

TEST(BlockManagerTest, AReusedEvictableBlockIsNotAlsoAFreshBlock) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable x, y;
  Prefill(m, x, Tokens(5));  // block 0 cached, block 1 private
  m.Free(x);
  Prefill(m, y, Tokens(24, 100));  // six blocks: one plain free and one cached block left
  ASSERT_EQ(m.stats().free_blocks, 2);
  ASSERT_EQ(m.stats().cached_free_blocks, 1);

  // Three blocks, one of them the cached one: two fresh, but only one other.
  EXPECT_FALSE(m.CanAllocate(Tokens(9), 0));
  BlockTable z;
  EXPECT_EQ(m.Allocate(Tokens(9), z).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(m.CanAllocate(Tokens(5), 0));
  absl::StatusOr<int> cached = m.Allocate(Tokens(5), z);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, 4);
  EXPECT_EQ(m.stats().free_blocks, 0);
  EXPECT_EQ(m.stats().evictions, 0);
  EXPECT_TRUE(m.CheckConsistency({&y, &z}).ok());
}

TEST(BlockManagerTest, CanAllocateAndBlocksNeededAgreeWithAllocateAndReserve) {
  for (int held = 0; held <= kNumBlocks; ++held) {
    for (int n = 1; n <= 4 * kBlockSize; ++n) {
      BlockManager m(kNumBlocks, kBlockSize);
      BlockTable cached_prefix, holder, t;
      Prefill(m, cached_prefix, Tokens(8));
      m.Free(cached_prefix);  // two evictable cached blocks
      ASSERT_TRUE(m.Allocate(Tokens(held * kBlockSize, 1000), holder).ok());
      const bool can = m.CanAllocate(Tokens(n), 0);
      EXPECT_EQ(m.Allocate(Tokens(n), t).ok(), can) << "held=" << held << " n=" << n;
      if (!can) continue;
      for (int extra = 0; extra <= 8; ++extra) {
        const int needed = m.BlocksNeeded(t, n, n + extra);
        const int free_before = m.num_free_blocks();
        std::vector<std::pair<int, int>> copies;
        absl::Status s = m.Reserve(t, n, n + extra, copies);
        EXPECT_EQ(s.ok(), needed <= free_before);
        if (s.ok()) {
          EXPECT_EQ(m.num_free_blocks(), free_before - needed);
        }
      }
      EXPECT_TRUE(m.CheckConsistency({&holder, &t}).ok());
    }
  }
}

TEST(BlockManagerTest, CheckConsistencyCatchesAWrongTable) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a;
  Prefill(m, a, Tokens(9));
  EXPECT_TRUE(m.CheckConsistency({&a}).ok());

  absl::Status s = m.CheckConsistency({});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("block 0 has ref count 1"));

  BlockTable extra = a;
  extra.blocks.pop_back();
  s = m.CheckConsistency({&a, &extra});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("block 0 has ref count 1 but live tables hold it 2 times"));

  BlockTable stray;
  stray.blocks = {5};
  s = m.CheckConsistency({&a, &stray});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("block 5"));

  BlockTable twice = a;
  twice.blocks[1] = twice.blocks[0];
  s = m.CheckConsistency({&twice});
  EXPECT_THAT(s.message(), HasSubstr("holds block 0 twice"));

  BlockTable out_of_range;
  out_of_range.blocks = {kNumBlocks};
  s = m.CheckConsistency({&a, &out_of_range});
  EXPECT_THAT(s.message(), HasSubstr("holds block 8 outside [0, 8)"));
}

TEST(BlockManagerDeathTest, MisuseIsABug) {
  BlockManager m(kNumBlocks, kBlockSize);
  BlockTable a, b;
  Prefill(m, a, Tokens(9));
  EXPECT_DEATH(m.Allocate(Tokens(4), a).IgnoreError(), "already holds 3 blocks");
  m.Fork(a, b);
  EXPECT_DEATH(m.Fork(a, b), "already holds 3 blocks");
  std::vector<std::pair<int, int>> copies;
  EXPECT_DEATH(m.Reserve(a, 4, 12, copies).IgnoreError(), "committed");
  EXPECT_DEATH(m.Reserve(a, 13, 14, copies).IgnoreError(), "outside the table");
  EXPECT_DEATH(BlockManager(0, kBlockSize), "num_blocks");
}

// A random mix of everything the scheduler does, checked against a model of
// the KV pool: every position written is recorded in its block, so a prefix
// hit that hands out wrong KV, or a write into a shared block, is caught.
void RunRandomOperations(BlockHashFn hash) {
  struct Seq {
    BlockTable table;
    std::vector<int32_t> tokens;
    int num_computed = 0;
  };
  BlockManager m(kNumBlocks, kBlockSize, std::move(hash));
  std::mt19937 rng(20240611);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // kv[block][slot]: the token whose KV the block holds there, -1 if none;
  // kv_salt[block]: the salt of the sequence that wrote it.
  std::vector<std::vector<int32_t>> kv(kNumBlocks, std::vector<int32_t>(kBlockSize, -1));
  std::vector<uint64_t> kv_salt(kNumBlocks, 0);
  // Prompts are prefixes of a few streams over a two-token alphabet, so hits
  // (and equal blocks after different prefixes) are common.
  std::vector<std::vector<int32_t>> streams(3);
  for (auto& s : streams) {
    for (int i = 0; i < 20; ++i) s.push_back(uniform(0, 1));
  }
  std::vector<Seq> seqs;
  auto live = [&seqs] {
    std::vector<const BlockTable*> out;
    for (const Seq& s : seqs) out.push_back(&s.table);
    return out;
  };
  auto check_cached_kv = [&](const Seq& s, int cached) {
    for (int p = 0; p < cached; ++p) {
      const int32_t b = s.table.blocks[p / kBlockSize];
      ASSERT_EQ(kv[b][p % kBlockSize], s.tokens[p]) << "position " << p << " from block " << b;
      ASSERT_EQ(kv_salt[b], s.table.cache_salt) << "block " << b << " reused across salts";
    }
  };
  auto allocate = [&](std::vector<int32_t> tokens, uint64_t salt) {
    Seq s;
    s.tokens = std::move(tokens);
    s.table.cache_salt = salt;
    const bool can = m.CanAllocate(s.tokens, salt);
    const BlockManagerStats before = m.stats();
    absl::StatusOr<int> cached = m.Allocate(s.tokens, s.table);
    ASSERT_EQ(cached.ok(), can);
    if (!cached.ok()) {
      ASSERT_EQ(cached.status().code(), absl::StatusCode::kResourceExhausted);
      ASSERT_EQ(m.stats().prefix_queries, before.prefix_queries);
      return;
    }
    ASSERT_EQ(*cached % kBlockSize, 0);
    ASSERT_LT(*cached, static_cast<int>(s.tokens.size()));
    ASSERT_EQ(static_cast<int>(s.table.blocks.size()),
              BlockManager::BlocksFor(s.tokens.size(), kBlockSize));
    check_cached_kv(s, *cached);
    s.num_computed = *cached;
    seqs.push_back(std::move(s));
  };

  for (int op = 0; op < 4000; ++op) {
    const int kind = uniform(0, 9);
    if (kind <= 1 && seqs.size() < 6) {  // a new prompt
      const std::vector<int32_t>& stream = streams[uniform(0, 2)];
      std::vector<int32_t> prompt(stream.begin(), stream.begin() + uniform(1, 20));
      if (uniform(0, 3) == 0) prompt.back() = uniform(0, 1);
      allocate(std::move(prompt), uniform(0, 4) == 0 ? 1 : 0);
    } else if (kind <= 6 && !seqs.empty()) {  // a step: prefill a chunk or decode
      Seq& s = seqs[uniform(0, static_cast<int>(seqs.size()) - 1)];
      if (s.num_computed == static_cast<int>(s.tokens.size())) s.tokens.push_back(uniform(0, 1));
      const int end = uniform(s.num_computed + 1, static_cast<int>(s.tokens.size()));
      const int needed = m.BlocksNeeded(s.table, s.num_computed, end);
      const int free_before = m.num_free_blocks();
      std::vector<std::pair<int, int>> copies;
      absl::Status status = m.Reserve(s.table, s.num_computed, end, copies);
      ASSERT_EQ(status.ok(), needed <= free_before) << status;
      if (status.ok()) {
        ASSERT_EQ(m.num_free_blocks(), free_before - needed);
        for (auto [src, dst] : copies) {
          kv[dst] = kv[src];
          kv_salt[dst] = kv_salt[src];
        }
        for (int p = s.num_computed; p < end; ++p) {
          const int32_t b = s.table.blocks[p / kBlockSize];
          ASSERT_EQ(m.ref_count(b), 1) << "write into shared block " << b;
          kv[b][p % kBlockSize] = s.tokens[p];
          kv_salt[b] = s.table.cache_salt;
        }
        s.num_computed = end;
        if (uniform(0, 4) != 0) m.Commit(s.table, s.tokens, s.num_computed);
      } else {
        ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
      }
    } else if (kind == 7 && !seqs.empty() && seqs.size() < 6) {  // fork
      const Seq& parent = seqs[uniform(0, static_cast<int>(seqs.size()) - 1)];
      Seq child;
      child.tokens = parent.tokens;
      child.num_computed = parent.num_computed;
      ASSERT_TRUE(child.table.blocks.empty());
      m.Fork(parent.table, child.table);
      seqs.push_back(std::move(child));
    } else if (kind == 8 && !seqs.empty()) {  // preempt: free, then allocate again
      const int i = uniform(0, static_cast<int>(seqs.size()) - 1);
      std::vector<int32_t> tokens = seqs[i].tokens;
      const uint64_t salt = seqs[i].table.cache_salt;
      m.Free(seqs[i].table);
      seqs.erase(seqs.begin() + i);
      allocate(std::move(tokens), salt);
    } else if (!seqs.empty()) {  // finish
      const int i = uniform(0, static_cast<int>(seqs.size()) - 1);
      m.Free(seqs[i].table);
      seqs.erase(seqs.begin() + i);
    }
    if (::testing::Test::HasFatalFailure()) return;
    absl::Status s = m.CheckConsistency(live());
    ASSERT_TRUE(s.ok()) << "after op " << op << ": " << s;
    const BlockManagerStats st = m.stats();
    ASSERT_EQ(st.used_blocks + st.free_blocks, kNumBlocks);
    ASSERT_LE(st.cached_free_blocks, st.cached_blocks);
    ASSERT_LE(st.prefix_hits, st.prefix_queries);
  }
  for (Seq& s : seqs) m.Free(s.table);
  seqs.clear();
  EXPECT_TRUE(m.CheckConsistency({}).ok());
  const BlockManagerStats st = m.stats();
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(st.free_blocks, kNumBlocks);
  // The run exercised what it claims to.
  EXPECT_GT(st.prefix_hits, 0);
  EXPECT_GT(st.evictions, 0);
  EXPECT_GT(st.copy_on_writes, 0);
}

TEST(BlockManagerTest, RandomOperationsKeepTheBookkeepingConsistent) {
  RunRandomOperations(DefaultBlockHash);
}

TEST(BlockManagerTest, RandomOperationsNeverReuseWrongKvUnderAWeakHash) {
  // Twelve values in all, ignoring the salt, half of each block and most of
  // the parent: collisions everywhere, including between equal blocks after
  // different prefixes.
  RunRandomOperations([](uint64_t parent, uint64_t, absl::Span<const int32_t> tokens) {
    return (parent % 3) * 4 + static_cast<uint64_t>(tokens[0] + 2 * tokens[1]);
  });
}

}  // namespace
}  // namespace conclave::engine
