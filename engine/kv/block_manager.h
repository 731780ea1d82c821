// Paged KV-cache bookkeeping: which physical block holds which positions of
// which sequence. Metadata only (ids, ref counts, chained hashes); the
// tensors live in the Backend's KV pool.
//
// Prefix cache: once a block is full and its KV has been computed, it is
// registered under a chained hash that covers its tokens, its parent block's
// hash and the sequence's cache salt (so different tenants never share
// blocks). A later prompt whose leading full blocks hash the same reuses
// them by reference count; every hit compares the stored tokens, the salt
// and the parent block (the one reused just before it), so a hash collision
// costs a miss, never wrong KV. A cached block whose ref count drops to zero
// stays cached (evictable, least recently freed first) until a fresh block
// is needed.
//
// Sequences share blocks by reference count (Fork); a write into a shared
// partial last block first copies it (copy-on-write), reported as a
// (src, dst) pair for Backend::CopyBlocks.
//
// Not thread-safe: owned by the Engine's step loop.
#ifndef CONCLAVE_ENGINE_KV_BLOCK_MANAGER_H_
#define CONCLAVE_ENGINE_KV_BLOCK_MANAGER_H_

#include <cstdint>
#include <functional>
#include <list>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace conclave::engine {

// One sequence's blocks. Position p lives in blocks[p / block_size].
struct BlockTable {
  std::vector<int32_t> blocks;
  // Chained hash of each leading full block registered in (or taken from)
  // the prefix cache; hashes.size() <= blocks.size().
  std::vector<uint64_t> hashes;
  uint64_t cache_salt = 0;  // tenant key: blocks are shared only within one salt
};

// hash(parent_hash, salt, tokens of one full block). Injectable for tests
// (a constant function forces collisions).
using BlockHashFn = std::function<uint64_t(uint64_t parent, uint64_t salt,
                                           absl::Span<const int32_t> tokens)>;
uint64_t DefaultBlockHash(uint64_t parent, uint64_t salt,
                          absl::Span<const int32_t> tokens);

struct BlockManagerStats {
  int num_blocks = 0;
  int block_size = 0;           // token slots per block
  int used_blocks = 0;          // ref count > 0
  // Token slots of the used blocks that hold (or are reserved for) a
  // position, each shared block counted once: a partial last block counts
  // only its reserved positions, so used_token_slots / (num_blocks *
  // block_size) is the pool's usage by tokens, below the usage by blocks.
  int64_t used_token_slots = 0;
  int cached_blocks = 0;        // registered in the prefix cache (any ref count)
  int cached_free_blocks = 0;   // cached with ref count 0 (evictable)
  int free_blocks = 0;          // allocatable now: never-cached free + evictable
  int64_t prefix_queries = 0;   // full prompt blocks that could be reused
  int64_t prefix_hits = 0;      // of which reused from the cache
  int64_t evictions = 0;
  int64_t copy_on_writes = 0;
};

class BlockManager {
 public:
  // num_blocks >= 1, block_size >= 1.
  BlockManager(int num_blocks, int block_size,
               BlockHashFn hash = DefaultBlockHash);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  int num_free_blocks() const;  // allocatable: free + evictable cached
  static int BlocksFor(int64_t num_tokens, int block_size);

  // Gives an empty `table` blocks for all of `tokens` (a prompt, or a
  // preempted sequence's prompt + generated tokens), reusing cached full
  // blocks whose chained hash under table.cache_salt matches and whose stored
  // tokens are equal. At most (tokens.size() - 1) / block_size blocks are
  // reused, so at least the last token is always computed (its logits are
  // needed). Returns how many leading tokens are already cached (a multiple
  // of block_size). RESOURCE_EXHAUSTED (and nothing allocated, no counter
  // moved) when the pool cannot hold the rest.
  absl::StatusOr<int> Allocate(absl::Span<const int32_t> tokens, BlockTable& table);

  // Whether Allocate(tokens) could succeed now (counts cache hits).
  bool CanAllocate(absl::Span<const int32_t> tokens, uint64_t cache_salt) const;

  // Makes `table` able to hold `num_tokens` positions, where positions
  // [0, num_computed) are already written: appends fresh blocks, and
  // replaces in `table` every shared block (ref count > 1) that the writes
  // [num_computed, num_tokens) touch by a private one. The one that already
  // holds written positions (num_computed % block_size != 0) is copied:
  // (src, dst) is appended to `copies`. RESOURCE_EXHAUSTED leaves `table` and
  // the pool as they were.
  absl::Status Reserve(BlockTable& table, int num_computed, int num_tokens,
                       std::vector<std::pair<int, int>>& copies);

  // Blocks that Reserve would have to take from the pool.
  int BlocksNeeded(const BlockTable& table, int num_computed, int num_tokens) const;

  // Registers every full block of `table` within the first `num_computed`
  // tokens (whose KV is now written) in the prefix cache, extending
  // table.hashes. `tokens` holds at least num_computed ids. A block whose
  // hash is already cached under another block stays private (no dedup), and
  // so do the blocks after it (a block is registered only after a cached one).
  void Commit(BlockTable& table, absl::Span<const int32_t> tokens, int num_computed);

  // `child` (empty) shares every block of `parent` (ref counts + 1), with
  // its hashes and cache salt.
  void Fork(const BlockTable& parent, BlockTable& child);

  // Drops `table`'s references (it is left empty). A block reaching ref
  // count 0 returns to the pool; if it is cached it stays findable until
  // evicted.
  void Free(BlockTable& table);

  int ref_count(int32_t block) const { return blocks_[block].ref_count; }
  BlockManagerStats stats() const;

  // Recomputes the ref count of every block from `live` (every table that
  // holds blocks) and compares with the manager's: INTERNAL naming the first
  // block that differs, or a free-list / cache inconsistency.
  absl::Status CheckConsistency(absl::Span<const BlockTable* const> live) const;

 private:
  struct Block {
    int ref_count = 0;
    bool cached = false;        // registered in cache_ under `hash`
    uint64_t hash = 0;
    std::vector<int32_t> tokens;  // the block's tokens, when cached
    std::list<int32_t>::iterator lru;  // position in evictable_, when cached && ref 0
    // When cached: the salt, and the cached block before it in its sequence
    // (-1 for a first block) as it was at registration. `generation` is
    // unique per registration, so a parent evicted and re-registered with
    // other tokens no longer matches its old children.
    uint64_t salt = 0;
    int32_t parent = -1;
    uint64_t parent_generation = 0;
    uint64_t generation = 0;
    // Positions [0, filled) of the block are reserved by some table holding
    // it; block_size once it is cached. Counted in used_token_slots_ while
    // ref_count > 0.
    int filled = 0;
  };

  // The leading blocks of `tokens` that Allocate would reuse under `salt`.
  struct PrefixMatch {
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;
    int num_queries = 0;    // full blocks eligible for reuse
    int num_evictable = 0;  // of `blocks`, those with ref count 0
  };
  PrefixMatch MatchPrefix(absl::Span<const int32_t> tokens, uint64_t salt) const;
  // A block off the free list, else the least recently freed cached one
  // (evicted), now with ref count 1. Precondition: num_free_blocks() > 0.
  int32_t TakeFreeBlock();
  void Release(int32_t block);
  // Records that positions [0, filled) of a held `block` are reserved.
  void Fill(int32_t block, int filled);
  // Fills the blocks of `table` that positions [from, to) fall into.
  void FillRange(const BlockTable& table, int64_t from, int64_t to);

  const int num_blocks_;
  const int block_size_;
  const BlockHashFn hash_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;            // ref 0, not cached
  std::list<int32_t> evictable_;         // ref 0, cached; front = least recently freed
  absl::flat_hash_map<uint64_t, int32_t> cache_;  // hash -> block
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
  int64_t evictions_ = 0;
  int64_t copy_on_writes_ = 0;
  int64_t used_token_slots_ = 0;  // sum of `filled` over blocks with ref_count > 0
  uint64_t next_generation_ = 0;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_KV_BLOCK_MANAGER_H_
