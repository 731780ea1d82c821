#include "engine/kv/block_manager.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::engine {
namespace {

// splitmix64's finalizer (Steele, Lea, Flood 2014): a bijection on 64 bits
// in which every input bit flips about half of the output bits.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t DefaultBlockHash(uint64_t parent, uint64_t salt, absl::Span<const int32_t> tokens) {
  uint64_t h = Mix(parent);
  h = Mix(h ^ salt);
  h = Mix(h ^ tokens.size());
  for (int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

BlockManager::BlockManager(int num_blocks, int block_size, BlockHashFn hash)
    : num_blocks_(num_blocks), block_size_(block_size), hash_(std::move(hash)) {
  CHECK_GE(num_blocks, 1) << "num_blocks";
  CHECK_GE(block_size, 1) << "block_size";
  CHECK(hash_ != nullptr) << "BlockManager needs a hash function";
  blocks_.resize(num_blocks);
  // Popped from the back: block 0 is handed out first.
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int BlockManager::num_free_blocks() const {
  return static_cast<int>(free_.size() + evictable_.size());
}

int BlockManager::BlocksFor(int64_t num_tokens, int block_size) {
  CHECK_GE(num_tokens, 0) << "num_tokens";
  CHECK_GE(block_size, 1) << "block_size";
  return static_cast<int>((num_tokens + block_size - 1) / block_size);
}

BlockManager::PrefixMatch BlockManager::MatchPrefix(absl::Span<const int32_t> tokens,
                                                    uint64_t salt) const {
  PrefixMatch m;
  // The last token is always computed: its logits pick the next token.
  m.num_queries = tokens.empty() ? 0 : static_cast<int>((tokens.size() - 1) / block_size_);
  uint64_t parent_hash = 0;
  int32_t parent = -1;
  for (int i = 0; i < m.num_queries; ++i) {
    absl::Span<const int32_t> block_tokens =
        tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = hash_(parent_hash, salt, block_tokens);
    auto it = cache_.find(h);
    if (it == cache_.end()) break;
    const Block& b = blocks_[it->second];
    // The hash only finds a candidate; these decide. Comparing the parent by
    // identity (and generation) makes the whole prefix equal by induction.
    const uint64_t parent_generation = parent >= 0 ? blocks_[parent].generation : 0;
    if (b.salt != salt || b.parent != parent || b.parent_generation != parent_generation ||
        !std::equal(b.tokens.begin(), b.tokens.end(), block_tokens.begin(), block_tokens.end())) {
      break;
    }
    m.blocks.push_back(it->second);
    m.hashes.push_back(h);
    if (b.ref_count == 0) ++m.num_evictable;
    parent = it->second;
    parent_hash = h;
  }
  return m;
}

absl::StatusOr<int> BlockManager::Allocate(absl::Span<const int32_t> tokens, BlockTable& table) {
  CHECK(table.blocks.empty() && table.hashes.empty())
      << "Allocate into a table that already holds " << table.blocks.size() << " blocks";
  PrefixMatch m = MatchPrefix(tokens, table.cache_salt);
  const int total = BlocksFor(static_cast<int64_t>(tokens.size()), block_size_);
  const int fresh = total - static_cast<int>(m.blocks.size());
  // A reused evictable block leaves the pool, so it cannot also be fresh.
  const int available = num_free_blocks() - m.num_evictable;
  if (fresh > available) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a sequence of ", tokens.size(), " tokens needs ", fresh, " fresh blocks (",
        m.blocks.size(), " cached), only ", available, " of ", num_blocks_, " are free"));
  }
  for (int32_t b : m.blocks) {
    Block& block = blocks_[b];
    if (block.ref_count == 0) {
      evictable_.erase(block.lru);
      used_token_slots_ += block.filled;
    }
    ++block.ref_count;
    table.blocks.push_back(b);
  }
  table.hashes = std::move(m.hashes);
  for (int i = 0; i < fresh; ++i) table.blocks.push_back(TakeFreeBlock());
  FillRange(table, 0, static_cast<int64_t>(tokens.size()));
  prefix_queries_ += m.num_queries;
  prefix_hits_ += static_cast<int64_t>(m.blocks.size());
  return static_cast<int>(m.blocks.size()) * block_size_;
}

bool BlockManager::CanAllocate(absl::Span<const int32_t> tokens, uint64_t cache_salt) const {
  const PrefixMatch m = MatchPrefix(tokens, cache_salt);
  const int total = BlocksFor(static_cast<int64_t>(tokens.size()), block_size_);
  return total - static_cast<int>(m.blocks.size()) <= num_free_blocks() - m.num_evictable;
}

int BlockManager::BlocksNeeded(const BlockTable& table, int num_computed, int num_tokens) const {
  CHECK_GE(num_computed, 0) << "num_computed";
  CHECK_LE(num_computed, num_tokens) << "num_computed beyond num_tokens";
  const int held = static_cast<int>(table.blocks.size());
  CHECK_LE(num_computed, static_cast<int64_t>(held) * block_size_)
      << "written positions [0, num_computed) lie outside the table's " << held << " blocks";
  CHECK_GE(num_computed, static_cast<int64_t>(table.hashes.size()) * block_size_)
      << "a write into the table's " << table.hashes.size() << " committed (read-only) blocks";
  if (num_computed == num_tokens) return 0;
  const int wanted = BlocksFor(num_tokens, block_size_);
  int needed = std::max(0, wanted - held);
  for (int i = num_computed / block_size_; i < std::min(held, wanted); ++i) {
    if (blocks_[table.blocks[i]].ref_count > 1) ++needed;
  }
  return needed;
}

absl::Status BlockManager::Reserve(BlockTable& table, int num_computed, int num_tokens,
                                   std::vector<std::pair<int, int>>& copies) {
  const int needed = BlocksNeeded(table, num_computed, num_tokens);
  if (needed > num_free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "reserving positions [", num_computed, ", ", num_tokens, ") needs ", needed,
        " blocks, only ", num_free_blocks(), " of ", num_blocks_, " are free"));
  }
  if (needed == 0) {
    FillRange(table, num_computed, num_tokens);
    return absl::OkStatus();
  }
  const int held = static_cast<int>(table.blocks.size());
  const int wanted = BlocksFor(num_tokens, block_size_);
  for (int i = num_computed / block_size_; i < std::min(held, wanted); ++i) {
    const int32_t src = table.blocks[i];
    if (blocks_[src].ref_count <= 1) continue;
    const int32_t dst = TakeFreeBlock();
    if (static_cast<int64_t>(i) * block_size_ < num_computed) {
      copies.emplace_back(src, dst);
      ++copy_on_writes_;
    }
    Release(src);
    table.blocks[i] = dst;
  }
  for (int i = held; i < wanted; ++i) table.blocks.push_back(TakeFreeBlock());
  FillRange(table, num_computed, num_tokens);
  return absl::OkStatus();
}

void BlockManager::Commit(BlockTable& table, absl::Span<const int32_t> tokens, int num_computed) {
  CHECK_GE(num_computed, 0) << "num_computed";
  CHECK_LE(static_cast<size_t>(num_computed), tokens.size()) << "Commit past the given tokens";
  CHECK_LE(num_computed, static_cast<int64_t>(table.blocks.size()) * block_size_)
      << "Commit past the table's " << table.blocks.size() << " blocks";
  const int full = num_computed / block_size_;
  for (int i = static_cast<int>(table.hashes.size()); i < full; ++i) {
    const uint64_t parent_hash = i > 0 ? table.hashes[i - 1] : 0;
    absl::Span<const int32_t> block_tokens =
        tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = hash_(parent_hash, table.cache_salt, block_tokens);
    table.hashes.push_back(h);
    const int32_t id = table.blocks[i];
    Block& block = blocks_[id];
    if (block.cached) {
      // Registered by another holder of this shared block, from the same KV.
      CHECK_EQ(block.hash, h) << "block " << id
                              << " is cached under another hash: its tokens differ from its KV";
      continue;
    }
    if (cache_.contains(h)) continue;
    const int32_t parent = i > 0 ? table.blocks[i - 1] : -1;
    // Under an uncached parent no lookup could ever reach this block.
    if (parent >= 0 && !blocks_[parent].cached) continue;
    Fill(id, block_size_);  // its KV is computed, so every position is in use
    block.cached = true;
    block.hash = h;
    block.tokens.assign(block_tokens.begin(), block_tokens.end());
    block.salt = table.cache_salt;
    block.parent = parent;
    block.parent_generation = parent >= 0 ? blocks_[parent].generation : 0;
    block.generation = ++next_generation_;
    cache_[h] = id;
  }
}

void BlockManager::Fork(const BlockTable& parent, BlockTable& child) {
  CHECK(child.blocks.empty() && child.hashes.empty())
      << "Fork into a table that already holds " << child.blocks.size() << " blocks";
  for (int32_t b : parent.blocks) {
    CHECK_GT(blocks_[b].ref_count, 0) << "block " << b << " forked but not held";
    ++blocks_[b].ref_count;
  }
  child.blocks = parent.blocks;
  child.hashes = parent.hashes;
  child.cache_salt = parent.cache_salt;
}

void BlockManager::Free(BlockTable& table) {
  // Last block first: a sequence's later blocks are then evicted before the
  // earlier ones they hang from, which keeps cached chains whole.
  for (auto it = table.blocks.rbegin(); it != table.blocks.rend(); ++it) Release(*it);
  table.blocks.clear();
  table.hashes.clear();
}

int32_t BlockManager::TakeFreeBlock() {
  CHECK_GT(num_free_blocks(), 0) << "TakeFreeBlock from an exhausted pool";
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = evictable_.front();
    evictable_.pop_front();
    Block& block = blocks_[id];
    auto it = cache_.find(block.hash);
    CHECK(it != cache_.end() && it->second == id)
        << "evictable block " << id << " is not in the cache under its hash";
    cache_.erase(it);
    block = Block();
    ++evictions_;
  }
  Block& block = blocks_[id];
  CHECK_EQ(block.ref_count, 0) << "block " << id << " taken from the pool while held";
  block.ref_count = 1;
  return id;
}

void BlockManager::Release(int32_t block) {
  Block& b = blocks_[block];
  CHECK_GT(b.ref_count, 0) << "block " << block << " released more often than it was held";
  if (--b.ref_count > 0) return;
  used_token_slots_ -= b.filled;
  if (b.cached) {
    b.lru = evictable_.insert(evictable_.end(), block);
  } else {
    b.filled = 0;
    free_.push_back(block);
  }
}

void BlockManager::Fill(int32_t block, int filled) {
  Block& b = blocks_[block];
  CHECK_GT(b.ref_count, 0) << "block " << block << " filled but not held";
  CHECK_LE(filled, block_size_) << "block " << block;
  if (filled <= b.filled) return;
  used_token_slots_ += filled - b.filled;
  b.filled = filled;
}

void BlockManager::FillRange(const BlockTable& table, int64_t from, int64_t to) {
  if (from >= to) return;
  const int last = BlocksFor(to, block_size_);
  CHECK_LE(last, static_cast<int64_t>(table.blocks.size()))
      << "positions up to " << to << " lie outside the table's " << table.blocks.size()
      << " blocks";
  for (int i = static_cast<int>(from / block_size_); i < last; ++i) {
    const int64_t start = static_cast<int64_t>(i) * block_size_;
    Fill(table.blocks[i], static_cast<int>(std::min<int64_t>(block_size_, to - start)));
  }
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.num_blocks = num_blocks_;
  s.block_size = block_size_;
  s.used_token_slots = used_token_slots_;
  s.free_blocks = num_free_blocks();
  s.used_blocks = num_blocks_ - s.free_blocks;
  s.cached_blocks = static_cast<int>(cache_.size());
  s.cached_free_blocks = static_cast<int>(evictable_.size());
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.evictions = evictions_;
  s.copy_on_writes = copy_on_writes_;
  return s;
}

absl::Status BlockManager::CheckConsistency(absl::Span<const BlockTable* const> live) const {
  std::vector<int> refs(num_blocks_, 0);
  for (size_t t = 0; t < live.size(); ++t) {
    const BlockTable& table = *live[t];
    if (table.hashes.size() > table.blocks.size()) {
      return absl::InternalError(absl::StrCat("table ", t, " has ", table.hashes.size(),
                                              " hashes for ", table.blocks.size(), " blocks"));
    }
    for (size_t i = 0; i < table.blocks.size(); ++i) {
      const int32_t b = table.blocks[i];
      if (b < 0 || b >= num_blocks_) {
        return absl::InternalError(absl::StrCat("table ", t, " holds block ", b,
                                                " outside [0, ", num_blocks_, ")"));
      }
      if (std::find(table.blocks.begin(), table.blocks.begin() + i, b) !=
          table.blocks.begin() + i) {
        return absl::InternalError(absl::StrCat("table ", t, " holds block ", b, " twice"));
      }
      if (i < table.hashes.size() && blocks_[b].cached && blocks_[b].hash != table.hashes[i]) {
        return absl::InternalError(absl::StrCat("block ", b, " is cached under another hash than ",
                                                "table ", t, " gives it"));
      }
      ++refs[b];
    }
  }
  for (int32_t b = 0; b < num_blocks_; ++b) {
    if (blocks_[b].ref_count != refs[b]) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref count ", blocks_[b].ref_count,
                                              " but live tables hold it ", refs[b], " times"));
    }
  }
  // Every block with ref count 0 is on exactly one of free_ and evictable_.
  std::vector<int> listed(num_blocks_, 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= num_blocks_) {
      return absl::InternalError(absl::StrCat("free list holds block id ", b));
    }
    if (blocks_[b].ref_count != 0 || blocks_[b].cached) {
      return absl::InternalError(absl::StrCat("block ", b, " is on the free list with ref count ",
                                              blocks_[b].ref_count, ", cached=",
                                              blocks_[b].cached));
    }
    ++listed[b];
  }
  for (auto it = evictable_.begin(); it != evictable_.end(); ++it) {
    const int32_t b = *it;
    if (b < 0 || b >= num_blocks_) {
      return absl::InternalError(absl::StrCat("evictable list holds block id ", b));
    }
    if (blocks_[b].ref_count != 0 || !blocks_[b].cached || blocks_[b].lru != it) {
      return absl::InternalError(absl::StrCat(
          "block ", b, " is on the evictable list with ref count ", blocks_[b].ref_count,
          ", cached=", blocks_[b].cached, ", lru position ",
          blocks_[b].lru == it ? "right" : "wrong"));
    }
    ++listed[b];
  }
  for (int32_t b = 0; b < num_blocks_; ++b) {
    const int expected = blocks_[b].ref_count == 0 ? 1 : 0;
    if (listed[b] != expected) {
      return absl::InternalError(absl::StrCat("block ", b, " with ref count ", blocks_[b].ref_count,
                                              " is on the free lists ", listed[b], " times"));
    }
  }
  int cached = 0;
  for (int32_t b = 0; b < num_blocks_; ++b) {
    if (!blocks_[b].cached) continue;
    ++cached;
    auto it = cache_.find(blocks_[b].hash);
    if (it == cache_.end() || it->second != b) {
      return absl::InternalError(
          absl::StrCat("cached block ", b, " is not in the cache under its hash"));
    }
    if (static_cast<int>(blocks_[b].tokens.size()) != block_size_) {
      return absl::InternalError(absl::StrCat("cached block ", b, " stores ",
                                              blocks_[b].tokens.size(), " tokens"));
    }
  }
  if (cached != static_cast<int>(cache_.size())) {
    return absl::InternalError(absl::StrCat("the cache maps ", cache_.size(), " hashes but ",
                                            cached, " blocks are cached"));
  }
  int64_t used_slots = 0;
  for (int32_t b = 0; b < num_blocks_; ++b) {
    const Block& block = blocks_[b];
    const int expected_max = block.ref_count > 0 || block.cached ? block_size_ : 0;
    if (block.filled < 0 || block.filled > expected_max ||
        (block.cached && block.filled != block_size_)) {
      return absl::InternalError(absl::StrCat("block ", b, " (ref count ", block.ref_count,
                                              ", cached=", block.cached, ") has ", block.filled,
                                              " filled positions"));
    }
    if (block.ref_count > 0) used_slots += block.filled;
  }
  if (used_slots != used_token_slots_) {
    return absl::InternalError(absl::StrCat("used blocks fill ", used_slots,
                                            " token slots but the count says ", used_token_slots_));
  }
  return absl::OkStatus();
}

}  // namespace conclave::engine
