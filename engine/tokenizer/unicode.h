// UTF-8 decoding/encoding and the Unicode code point classes the tokenizers
// need, with llama.cpp's conventions so that token ids match it:
//  - decoding is lenient like llama.cpp's: a lead byte with its continuation
//    bytes present yields a code point (overlong forms are not rejected);
//    anything else yields U+FFFD and consumes exactly one byte;
//  - classes follow the Unicode general category (see
//    scripts/gen_unicode_tables.py) plus the White_Space property.
// Thread-safe: pure functions over constant tables.
#ifndef CONCLAVE_ENGINE_TOKENIZER_UNICODE_H_
#define CONCLAVE_ENGINE_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace conclave::engine {

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// Bit flags of one code point. Exactly one of the category bits is set for
// every code point in U+0000..U+10FFFF; kWhitespace may be added to it.
enum CodepointFlag : uint16_t {
  kCpUndefined = 0x0001,    // Cn (unassigned)
  kCpNumber = 0x0002,       // \p{N}
  kCpLetter = 0x0004,       // \p{L}
  kCpSeparator = 0x0008,    // \p{Z}
  kCpAccentMark = 0x0010,   // \p{M}
  kCpPunctuation = 0x0020,  // \p{P}
  kCpSymbol = 0x0040,       // \p{S}
  kCpControl = 0x0080,      // \p{C} other than Cn
  kCpWhitespace = 0x0100,   // \s (White_Space)
};

// Flags of `cpt`; 0 for values above U+10FFFF.
uint16_t CodepointFlags(uint32_t cpt);

// Byte length of the UTF-8 sequence that `lead` starts, judged from its high
// nibble only (1 for ASCII and stray continuation bytes, 2, 3 or 4).
size_t Utf8SequenceLength(char lead);

// Decodes the code point at `*offset` and advances `*offset` past it (see the
// file comment for invalid input). Requires *offset < text.size().
uint32_t DecodeUtf8(std::string_view text, size_t* offset);

// All code points of `text`, decoded as DecodeUtf8 does.
std::vector<uint32_t> DecodeUtf8All(std::string_view text);

// Appends the UTF-8 encoding of `cpt` (which must be <= U+10FFFF).
void AppendUtf8(uint32_t cpt, std::string* out);
std::string EncodeUtf8(uint32_t cpt);

// GPT-2 byte-level BPE alphabet: every byte maps to one printable code
// point (bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF map to themselves, the others
// in increasing order to U+0100 and up). Returned as that code point's UTF-8.
const std::string& ByteToUnicode(uint8_t byte);
// The inverse; -1 for a code point outside the alphabet.
int UnicodeToByte(uint32_t cpt);

namespace unicode_internal {
struct CodepointRange {
  uint32_t first;  // flags hold from here up to the next range's first - 1
  uint16_t flags;
};
// Generated: engine/tokenizer/unicode_tables.cc.
extern const int kNumCodepointRanges;
extern const CodepointRange kCodepointRanges[];
}  // namespace unicode_internal

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_TOKENIZER_UNICODE_H_
