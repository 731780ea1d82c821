// Fuzzes a GGUF file image end to end: GgufFile::FromBytes must return a
// status for any bytes, and an image it accepts must keep every tensor inside
// the image with the byte size its type and dims give. Accepted images go on
// to the consumers of the metadata, which must return a status too:
// LoadModelSpec (architecture keys, tensor shapes) and Tokenizer::FromGguf
// (vocab, merges, special ids); a tokenizer built from such a vocab must
// encode and decode a short text without crashing.
// Seeds: corpus/gguf_reader_fuzz/ (fuzz/make_corpus.py); dictionary:
// gguf_reader_fuzz.dict.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"
#include "engine/model/model_loader.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/ggml_types.h"

namespace {

using conclave::engine::GgufFile;
using conclave::engine::GgufTensorInfo;

// A broken property of an accepted image: a bug, reported as a crash.
[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "gguf_reader_fuzz: %s\n", what);
  std::abort();
}

void CheckTensors(const GgufFile& file, size_t image_size) {
  for (const GgufTensorInfo& t : file.tensors()) {
    const conclave::kernels::TypeTraits& traits = conclave::kernels::TraitsOf(t.type);
    const uint64_t elements = static_cast<uint64_t>(t.num_elements());
    if (t.dims.empty() || t.dims[0] % traits.block_elems != 0) Fail("ne0 not whole blocks");
    if (t.num_bytes != elements / traits.block_elems * traits.block_bytes) {
      Fail("num_bytes disagrees with the type and dims");
    }
    const uint8_t* p = file.TensorData(t);
    if (t.num_bytes > image_size) Fail("tensor larger than the image");
    // Touch the first and last byte: ASan flags them if outside the image's
    // heap copy.
    if (t.num_bytes > 0) {
      volatile uint8_t sink = p[0];
      sink = p[t.num_bytes - 1];
      (void)sink;
    }
    if (file.FindTensor(t.name) != &t) Fail("FindTensor does not find a listed tensor");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file =
      GgufFile::FromBytes(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!file.ok()) return 0;
  CheckTensors(**file, size);
  for (const std::string& key : (*file)->metadata_keys()) {
    if ((*file)->Find(key) == nullptr) Fail("Find does not find a listed key");
    (void)(*file)->GetInt(key);
    (void)(*file)->GetFloat(key);
  }
  (void)conclave::engine::LoadModelSpec(**file);
  absl::StatusOr<std::unique_ptr<conclave::engine::Tokenizer>> tokenizer =
      conclave::engine::Tokenizer::FromGguf(**file);
  if (tokenizer.ok()) {
    const conclave::engine::Tokenizer& tok = **tokenizer;
    std::vector<int32_t> ids = tok.Encode("Hello <|im_start|> w\xC3\xB6rld 42\xFF\n", true, true);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) Fail("Encode returned an id outside the vocab");
    }
    ids.push_back(-1);
    ids.push_back(tok.vocab_size());
    (void)tok.Decode(ids);
  }
  return 0;
}
