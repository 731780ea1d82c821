// SentencePiece-style BPE over vocabulary scores (GGUF tokenizer.ggml.model
// "llama"), equivalent to llama.cpp's llm_tokenizer_spm_session: split the
// (already whitespace-escaped) text into UTF-8 characters, then repeatedly
// merge the adjacent pair whose concatenation is a token with the highest
// score (ties: leftmost). Symbols that are not tokens become <0xXX> byte
// tokens. Immutable after construction; Encode is thread-safe.
#ifndef CONCLAVE_ENGINE_TOKENIZER_SPM_TOKENIZER_H_
#define CONCLAVE_ENGINE_TOKENIZER_SPM_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/tokenizer/vocab.h"

namespace conclave::engine {

class SpmTokenizer {
 public:
  // `vocab` must outlive the tokenizer. `unk_id` (or -1) stands in for a
  // byte that has no byte token.
  SpmTokenizer(const Vocab* vocab, int32_t unk_id);

  // Appends the ids of `text` (spaces already replaced by U+2581) to `out`.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;

  // The token for one raw byte: "<0xXX>", else the byte itself, else -1.
  int32_t ByteToken(uint8_t byte) const { return byte_tokens_[byte]; }

 private:
  const Vocab* vocab_;
  int32_t unk_id_;
  std::array<int32_t, 256> byte_tokens_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_SPM_TOKENIZER_H_
