// A tokenizer vocabulary as read from GGUF: token texts, scores and
// attributes, and the text -> id index. Shared by the BPE and SPM algorithms.
// Immutable after construction; safe to read from many threads.
#ifndef CONCLAVE_ENGINE_TOKENIZER_VOCAB_H_
#define CONCLAVE_ENGINE_TOKENIZER_VOCAB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace conclave::engine {

// Token attributes (llama.h llama_token_attr bit values).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

// GGUF tokenizer.ggml.token_type value -> TokenAttr (1 normal, 2 unknown,
// 3 control, 4 user defined, 5 unused, 6 byte; anything else undefined).
uint32_t TokenTypeToAttr(int64_t token_type);

struct Vocab {
  std::vector<std::string> texts;  // [n]
  std::vector<float> scores;       // [n]; 0 when the file has none
  std::vector<uint32_t> attrs;     // [n] TokenAttr bits
  absl::flat_hash_map<std::string, int32_t> ids;

  int32_t size() const { return static_cast<int32_t>(texts.size()); }
  bool IsValid(int32_t id) const { return id >= 0 && id < size(); }
  std::optional<int32_t> Find(std::string_view text) const {
    // This absl build's string_view is not std::string_view.
    auto it = ids.find(absl::string_view(text.data(), text.size()));
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_VOCAB_H_
