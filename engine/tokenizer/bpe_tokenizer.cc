#include "engine/tokenizer/bpe_tokenizer.h"

#include <queue>

#include "absl/status/status.h"
#include "engine/tokenizer/unicode.h"

namespace conclave::engine {
namespace {

std::string RankKey(std::string_view left, std::string_view right) {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  key.append(left);
  key.push_back('\0');
  key.append(right);
  return key;
}

// A run of bytes of the word being merged; a linked list over `symbols`.
struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t size;  // 0 once merged into its left neighbour
};

struct Candidate {
  int rank;
  int left;
  int right;
  size_t size;  // left.size + right.size when queued; stale if it changed
};

struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(
    const Vocab* vocab, const std::vector<std::string>& merges,
    std::vector<PreTokenizeStep> steps) {
  if (merges.empty()) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.merges is empty; byte-level BPE needs merges");
  }
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(vocab, std::move(steps)));
  tok->ranks_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    std::string key = space == std::string::npos
                          ? RankKey("", "")
                          : RankKey(std::string_view(m).substr(0, space),
                                    std::string_view(m).substr(space + 1));
    tok->ranks_.try_emplace(std::move(key), static_cast<int>(i));
  }
  return tok;
}

int BpeTokenizer::MergeRank(std::string_view left, std::string_view right) const {
  auto it = ranks_.find(RankKey(left, right));
  return it == ranks_.end() ? -1 : it->second;
}

void BpeTokenizer::Encode(std::string_view text, std::vector<int32_t>* out) const {
  for (const std::string& word : PreTokenize(text, steps_)) EncodeWord(word, out);
}

void BpeTokenizer::EncodeWord(const std::string& word,
                              std::vector<int32_t>* out) const {
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < word.size();) {
    const size_t len =
        std::min(word.size() - offset, Utf8SequenceLength(word[offset]));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + len == word.size() ? -1 : index + 1,
                       offset, len});
    offset += len;
  }
  const auto text_of = [&](const Symbol& s) {
    return std::string_view(word).substr(s.offset, s.size);
  };

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateAfter> queue;
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int rank = MergeRank(text_of(symbols[left]), text_of(symbols[right]));
    if (rank < 0) return;
    queue.push({rank, left, right, symbols[left].size + symbols[right].size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) consider(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != c.size) {
      continue;  // one side changed since this pair was queued
    }
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }

  for (const Symbol& s : symbols) {
    if (s.size == 0) continue;
    const std::string_view text = text_of(s);
    if (std::optional<int32_t> id = vocab_->Find(text)) {
      out->push_back(*id);
      continue;
    }
    // As llama.cpp: fall back to single-byte tokens of the encoded text
    // (only ASCII-printable bytes have one; others are dropped).
    for (char ch : text) {
      if (std::optional<int32_t> id = vocab_->Find(std::string_view(&ch, 1))) {
        out->push_back(*id);
      }
    }
  }
}

}  // namespace conclave::engine
