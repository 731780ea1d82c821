// Text <-> token ids for a GGUF model, token-exact with llama.cpp's
// llama_tokenize / llama_token_to_piece. Supported tokenizer models:
//   "gpt2"  byte-level BPE, pre-tokenizer "smollm" (SmolLM/SmolLM2) and the
//           other pre types that use the same split (starcoder, refact, ...)
//   "llama" SentencePiece-style BPE over scores (Llama 1/2, Gemma 3)
// Immutable after FromGguf; every method is thread-safe.
#ifndef CONCLAVE_ENGINE_TOKENIZER_TOKENIZER_H_
#define CONCLAVE_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/gguf_reader.h"
#include "engine/tokenizer/vocab.h"

namespace conclave::engine {

class BpeTokenizer;
class SpmTokenizer;

class Tokenizer {
 public:
  enum class Type { kBpe, kSpm };

  // Reads the tokenizer.ggml.* keys (the file may be closed afterwards).
  // INVALID_ARGUMENT naming the key when one is missing, has the wrong type,
  // or disagrees with the others (array lengths, ids out of range, duplicate
  // tokens); UNIMPLEMENTED for an unsupported tokenizer model or pre type.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // llama_tokenize semantics. `add_special` adds BOS / EOS only where the
  // vocab asks for them (tokenizer.ggml.add_bos_token / add_eos_token, with
  // the model type's defaults). `parse_special` turns control-token text in
  // the input (e.g. "<|im_start|>") into that token; user-defined tokens are
  // always matched. Longer special tokens are matched first. Never fails:
  // invalid UTF-8 is tokenized as llama.cpp does (BPE: each bad byte becomes
  // U+FFFD; SPM: byte tokens).
  std::vector<int32_t> Encode(std::string_view text, bool add_special,
                              bool parse_special) const;

  // The bytes of one token as llama_token_to_piece(special=true) renders
  // them: control / user-defined / unknown tokens as their text, BPE tokens
  // through the byte alphabet, SPM tokens with U+2581 -> ' ', <0xXX> -> that
  // byte. "" for unused tokens and ids outside [0, vocab_size()).
  std::string TokenPiece(int32_t id) const;

  // Concatenated TokenPiece of every id (special tokens included, no space
  // stripping), so Decode(Encode(s, false, true)) == s for valid UTF-8 s
  // whose bytes all have a token: byte-level BPE drops a byte whose alphabet
  // character is not in the vocab, as llama.cpp does (SmolLM2 has none for
  // 0x04, 0x06, 0x13, 0x14, 0x16 and 0x1D).
  std::string Decode(absl::Span<const int32_t> ids) const;

  Type type() const { return type_; }
  int32_t vocab_size() const { return vocab_.size(); }
  int32_t bos_id() const { return bos_id_; }  // -1 when the vocab has none
  int32_t eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }

  // EOS and the end-of-turn tokens (<|im_end|>, <end_of_turn>, <|endoftext|>,
  // ...) that end generation, as llama.cpp's vocab EOG set.
  bool IsEndOfGeneration(int32_t id) const { return eog_ids_.contains(id); }
  const absl::flat_hash_set<int32_t>& eog_ids() const { return eog_ids_; }

  // Id of the token whose text is exactly `piece` (vocab form: byte-encoded
  // for BPE, U+2581 for spaces in SPM; special tokens by their text).
  std::optional<int32_t> FindToken(std::string_view piece) const {
    return vocab_.Find(piece);
  }
  uint32_t token_attr(int32_t id) const {
    return vocab_.IsValid(id) ? vocab_.attrs[id] : kAttrUndefined;
  }

 private:
  Tokenizer() = default;

  absl::Status Init(const GgufFile& file);
  // Splits `text` around special-token occurrences: the result alternates
  // raw-text spans and token ids in input order.
  struct Fragment {
    int32_t token;  // -1 for raw text
    size_t offset;
    size_t length;
  };
  std::vector<Fragment> PartitionSpecial(std::string_view text,
                                         bool parse_special) const;
  std::string RenderPiece(int32_t id) const;

  Type type_ = Type::kBpe;
  Vocab vocab_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
  // Control, user-defined and unknown tokens, longest text first.
  std::vector<int32_t> special_tokens_;
  absl::flat_hash_set<int32_t> eog_ids_;
  std::vector<std::string> pieces_;  // TokenPiece cache, [vocab_size]
  std::unique_ptr<BpeTokenizer> bpe_;
  std::unique_ptr<SpmTokenizer> spm_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_TOKENIZER_H_
