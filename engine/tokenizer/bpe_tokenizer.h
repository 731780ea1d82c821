// Byte-level BPE (GGUF tokenizer.ggml.model "gpt2"), equivalent to
// llama.cpp's llm_tokenizer_bpe_session: pre-tokenize into byte-encoded
// words, then in each word repeatedly merge the adjacent pair with the lowest
// merge rank (ties: leftmost). A final symbol that is not a token is emitted
// byte by byte where single-byte tokens exist.
// Immutable after Create; Encode is thread-safe.
#ifndef CONCLAVE_ENGINE_TOKENIZER_BPE_TOKENIZER_H_
#define CONCLAVE_ENGINE_TOKENIZER_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace conclave::engine {

class BpeTokenizer {
 public:
  // `merges` are "LEFT RIGHT" strings (split at the first space after the
  // first byte); rank = index, the first of duplicates wins. `vocab` must
  // outlive the tokenizer. INVALID_ARGUMENT for an empty merge list.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(
      const Vocab* vocab, const std::vector<std::string>& merges,
      std::vector<PreTokenizeStep> steps);

  // Appends the ids of raw (non-special) `text` to `out`.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;

  // Rank of merging `left` and `right`, or -1.
  int MergeRank(std::string_view left, std::string_view right) const;

 private:
  BpeTokenizer(const Vocab* vocab, std::vector<PreTokenizeStep> steps)
      : vocab_(vocab), steps_(std::move(steps)) {}

  void EncodeWord(const std::string& word, std::vector<int32_t>* out) const;

  const Vocab* vocab_;
  std::vector<PreTokenizeStep> steps_;
  // Key: left + '\0' + right (token texts never contain NUL bytes that
  // matter here: a NUL inside a merge half only makes that merge unusable).
  absl::flat_hash_map<std::string, int> ranks_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_BPE_TOKENIZER_H_
