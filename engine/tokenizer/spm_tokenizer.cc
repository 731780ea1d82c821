#include "engine/tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <queue>
#include <string>

#include "absl/strings/str_format.h"
#include "engine/tokenizer/unicode.h"

namespace conclave::engine {
namespace {

struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t size;  // 0 once merged into its left neighbour
};

struct Candidate {
  float score;
  int left;
  int right;
  size_t size;  // left.size + right.size when queued; stale if it changed
};

struct CandidateBefore {
  // priority_queue puts the "largest" on top: highest score, then leftmost.
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  }
};

}  // namespace

SpmTokenizer::SpmTokenizer(const Vocab* vocab, int32_t unk_id)
    : vocab_(vocab), unk_id_(unk_id) {
  for (int b = 0; b < 256; ++b) {
    std::optional<int32_t> id = vocab_->Find(absl::StrFormat("<0x%02X>", b));
    if (!id) {
      const char raw = static_cast<char>(b);
      id = vocab_->Find(std::string_view(&raw, 1));
    }
    byte_tokens_[b] = id.value_or(-1);
  }
}

void SpmTokenizer::Encode(std::string_view text, std::vector<int32_t>* out) const {
  // Characters by lead byte only, as llama.cpp does: an invalid lead byte
  // swallows up to three following bytes into one symbol.
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    const size_t len =
        std::min(text.size() - offset, Utf8SequenceLength(text[offset]));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + len == text.size() ? -1 : index + 1,
                       offset, len});
    offset += len;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateBefore> queue;
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].size + symbols[right].size;
    std::optional<int32_t> id =
        vocab_->Find(text.substr(symbols[left].offset, size));
    if (!id) return;
    queue.push({vocab_->scores[*id], left, right, size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) consider(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != c.size) {
      continue;
    }
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.offset, s.size);
    if (std::optional<int32_t> id = vocab_->Find(piece)) {
      out->push_back(*id);
      continue;
    }
    // Every merged symbol is a token, so only single characters get here.
    for (char ch : piece) {
      const int32_t id = byte_tokens_[static_cast<uint8_t>(ch)];
      if (id >= 0) {
        out->push_back(id);
      } else if (unk_id_ >= 0) {
        out->push_back(unk_id_);
      }
    }
  }
}

}  // namespace conclave::engine
