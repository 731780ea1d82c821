// Fuzzes the tokenizer of the real default model (SmolLM2's byte-level BPE
// vocab; $CONCLAVE_FUZZ_MODEL picks another GGUF). The first input byte
// chooses what the rest is:
//   even: text (any bytes, invalid UTF-8 included) to Encode, bit 1 of the
//         selector = add_special, bit 2 = parse_special. Every id must be
//         in the vocab, and Decode must give back the text as the
//         tokenizer reads it: UTF-8 decoded leniently (a byte that does not
//         start a complete sequence becomes U+FFFD), less the bytes that
//         have no token (BPE: a byte whose GPT-2 alphabet character is not
//         in the vocab is dropped, as llama.cpp drops it). So exactly the
//         text when it is valid UTF-8 of bytes that have tokens: the round
//         trip tokenizer.h promises.
//   odd:  little-endian int32 token ids (any value) to Decode, which must
//         equal the concatenated TokenPiece of each id ("" outside the
//         vocab); TokenPiece, token_attr and IsEndOfGeneration take any id.
// Only the vocab is kept: the file's mapping is dropped after FromGguf.
// Seeds: corpus/tokenizer_fuzz/; dictionary: tokenizer_fuzz.dict.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace {

using conclave::engine::Tokenizer;

const Tokenizer* g_tokenizer = nullptr;
// BPE: whether byte b's GPT-2 alphabet character is a token.
bool g_byte_has_token[256];

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "tokenizer_fuzz: %s\n", what.c_str());
  std::abort();
}

// `text` as the BPE tokenizer reads it: decoded leniently, re-encoded, less
// the bytes without a token.
std::string AsRead(std::string_view text) {
  std::string utf8;
  for (uint32_t cpt : conclave::engine::DecodeUtf8All(text)) {
    conclave::engine::AppendUtf8(cpt, &utf8);
  }
  std::string out;
  for (char c : utf8) {
    if (g_byte_has_token[static_cast<uint8_t>(c)]) out.push_back(c);
  }
  return out;
}

void FuzzEncode(std::string_view text, bool add_special, bool parse_special) {
  const Tokenizer& tok = *g_tokenizer;
  std::vector<int32_t> ids = tok.Encode(text, add_special, parse_special);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) Fail("Encode returned an id outside the vocab");
  }
  if (add_special) {
    // Strip what add_special added, so the rest must round-trip.
    if (tok.add_bos()) {
      if (ids.empty() || ids.front() != tok.bos_id()) Fail("add_special without BOS first");
      ids.erase(ids.begin());
    }
    if (tok.add_eos()) {
      if (ids.empty() || ids.back() != tok.eos_id()) Fail("add_special without EOS last");
      ids.pop_back();
    }
  }
  if (text.empty() && !ids.empty()) Fail("tokens for an empty text");
  if (tok.type() == Tokenizer::Type::kBpe && tok.Decode(ids) != AsRead(text)) {
    Fail("Decode(Encode(text)) differs from the text as the tokenizer reads it");
  }
}

void FuzzDecode(const uint8_t* data, size_t size) {
  const Tokenizer& tok = *g_tokenizer;
  std::vector<int32_t> ids(size / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * sizeof(int32_t));
  std::string pieces;
  for (int32_t id : ids) {
    pieces += tok.TokenPiece(id);
    (void)tok.token_attr(id);
    (void)tok.IsEndOfGeneration(id);
  }
  if (tok.Decode(ids) != pieces) Fail("Decode differs from the concatenated TokenPiece");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const char* env = std::getenv("CONCLAVE_FUZZ_MODEL");
  const std::string path = env != nullptr && *env != '\0' ? env : CONCLAVE_FUZZ_DEFAULT_MODEL;
  absl::StatusOr<std::unique_ptr<conclave::engine::GgufFile>> file =
      conclave::engine::GgufFile::Open(path);
  if (!file.ok()) {
    std::fprintf(stderr,
                 "tokenizer_fuzz: cannot open the model (set CONCLAVE_FUZZ_MODEL, or run "
                 "scripts/fetch_models.sh): %s\n",
                 std::string(file.status().message()).c_str());
    std::exit(1);
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromGguf(**file);
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s: %s\n", path.c_str(),
                 std::string(tok.status().message()).c_str());
    std::exit(1);
  }
  g_tokenizer = tok->release();  // lives for the whole run
  for (int b = 0; b < 256; ++b) {
    g_byte_has_token[b] =
        g_tokenizer->FindToken(conclave::engine::ByteToUnicode(static_cast<uint8_t>(b)))
            .has_value();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  ++data;
  --size;
  if (selector & 1) {
    FuzzDecode(data, size);
  } else {
    FuzzEncode(std::string_view(reinterpret_cast<const char*>(data), size),
               /*add_special=*/selector & 2, /*parse_special=*/selector & 4);
  }
  return 0;
}
