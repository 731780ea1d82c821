// Pre-tokenization for byte-level BPE: splits text into the words that BPE
// merges never cross, as llama.cpp's regex split does for the GPT-2 family,
// then maps each word's UTF-8 bytes through the GPT-2 byte alphabet.
// Hand-written equivalents of the regexes (no regex engine):
//   kDigits: \p{N}            each number code point is its own word
//   kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Steps run in order, each refining the previous step's words.
// Thread-safe: stateless.
#ifndef CONCLAVE_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define CONCLAVE_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace conclave::engine {

enum class PreTokenizeStep { kDigits, kGpt2 };

// Splits `text` (decoded leniently: invalid bytes become U+FFFD, as in
// llama.cpp) by `steps` and returns the words, each byte-encoded (every UTF-8
// byte replaced by its GPT-2 alphabet character).
std::vector<std::string> PreTokenize(std::string_view text,
                                     const std::vector<PreTokenizeStep>& steps);

// The same split without byte encoding, as word lengths in code points over
// `cpts` (exposed for tests).
std::vector<size_t> SplitCodepoints(const std::vector<uint32_t>& cpts,
                                    const std::vector<PreTokenizeStep>& steps);

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
