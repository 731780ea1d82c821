#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>

#include "kernels/check.h"

namespace conclave::engine {
namespace {

using unicode_internal::CodepointRange;
using unicode_internal::kCodepointRanges;
using unicode_internal::kNumCodepointRanges;

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

struct ByteMaps {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int, 512> cpt_to_byte;  // every mapped code point is < U+0200
};

const ByteMaps& GetByteMaps() {
  static const ByteMaps* maps = [] {
    auto* m = new ByteMaps();
    m->cpt_to_byte.fill(-1);
    std::array<uint32_t, 256> cpt_of{};
    std::array<bool, 256> printable{};
    for (int b = 0; b < 256; ++b) {
      printable[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    }
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) cpt_of[b] = printable[b] ? b : next++;
    for (int b = 0; b < 256; ++b) {
      m->byte_to_utf8[b] = EncodeUtf8(cpt_of[b]);
      m->cpt_to_byte[cpt_of[b]] = b;
    }
    return m;
  }();
  return *maps;
}

}  // namespace

uint16_t CodepointFlags(uint32_t cpt) {
  if (cpt > kMaxCodepoint) return 0;
  const CodepointRange* end = kCodepointRanges + kNumCodepointRanges;
  const CodepointRange* it = std::upper_bound(
      kCodepointRanges, end, cpt,
      [](uint32_t value, const CodepointRange& r) { return value < r.first; });
  CHECK(it != kCodepointRanges) << "unicode table must start at U+0000";
  return (it - 1)->flags;
}

size_t Utf8SequenceLength(char lead) {
  static constexpr size_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[static_cast<uint8_t>(lead) >> 4];
}

uint32_t DecodeUtf8(std::string_view text, size_t* offset) {
  const size_t pos = *offset;
  CHECK_LT(pos, text.size());
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  const auto is_cont = [&](size_t i) {
    return pos + i < text.size() && (byte(i) & 0xC0) == 0x80;
  };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) {
    *offset += 1;
    return b0;
  }
  uint32_t cpt = kReplacementCharacter;
  size_t len = 1;
  if ((b0 & 0xE0) == 0xC0) {
    if (is_cont(1)) {
      cpt = ((b0 & 0x1Fu) << 6) | (byte(1) & 0x3Fu);
      len = 2;
    }
  } else if ((b0 & 0xF0) == 0xE0) {
    if (is_cont(1) && is_cont(2)) {
      cpt = ((b0 & 0x0Fu) << 12) | ((byte(1) & 0x3Fu) << 6) | (byte(2) & 0x3Fu);
      len = 3;
    }
  } else if ((b0 & 0xF8) == 0xF0) {
    if (is_cont(1) && is_cont(2) && is_cont(3)) {
      const uint32_t v = ((b0 & 0x07u) << 18) | ((byte(1) & 0x3Fu) << 12) |
                         ((byte(2) & 0x3Fu) << 6) | (byte(3) & 0x3Fu);
      // llama.cpp would abort re-encoding a value past U+10FFFF; we treat it
      // as an invalid lead byte instead.
      if (v <= kMaxCodepoint) {
        cpt = v;
        len = 4;
      }
    }
  }
  *offset += len;
  return cpt;
}

std::vector<uint32_t> DecodeUtf8All(std::string_view text) {
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  size_t offset = 0;
  while (offset < text.size()) cpts.push_back(DecodeUtf8(text, &offset));
  return cpts;
}

void AppendUtf8(uint32_t cpt, std::string* out) {
  CHECK_LE(cpt, kMaxCodepoint) << "not a code point";
  if (cpt < 0x80) {
    out->push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

std::string EncodeUtf8(uint32_t cpt) {
  std::string s;
  AppendUtf8(cpt, &s);
  return s;
}

const std::string& ByteToUnicode(uint8_t byte) {
  return GetByteMaps().byte_to_utf8[byte];
}

int UnicodeToByte(uint32_t cpt) {
  const ByteMaps& maps = GetByteMaps();
  return cpt < maps.cpt_to_byte.size() ? maps.cpt_to_byte[cpt] : -1;
}

}  // namespace conclave::engine
