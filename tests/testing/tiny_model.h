// Tiny random-weight models for fast tests: a GGUF image with the metadata
// and tensors engine/model/model_loader reads, for arch "llama" or "gemma3",
// with every weight matrix of one chosen GgmlType (norm weights F32).
//
//   TinyModelOptions o = TinyLlamaOptions(kernels::GgmlType::kQ8_0);
//   absl::StatusOr<TinyModel> m = LoadTinyModel(o);
//   backend.LoadModel(m->spec.config, m->spec.weights);
//
// No tokenizer metadata: enough for LoadModelSpec, not for Model::Load.
#ifndef CONCLAVE_TESTS_TESTING_TINY_MODEL_H_
#define CONCLAVE_TESTS_TESTING_TINY_MODEL_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"
#include "engine/model/model_loader.h"
#include "kernels/ggml_types.h"
#include "kernels/model_spec.h"
#include "tests/testing/gguf_writer.h"

namespace conclave::testing {

struct TinyModelOptions {
  kernels::Architecture arch = kernels::Architecture::kLlama;
  // Type of every matrix (token_embd, output, attention and FFN weights).
  // Row lengths (hidden, ffn_hidden, n_heads * head_dim) must be whole
  // blocks of it: 32 for Q4_1 / Q8_0, 256 for Q4_K / Q6_K.
  kernels::GgmlType weight_type = kernels::GgmlType::kF32;
  int n_layers = 2;
  int hidden = 64;
  int ffn_hidden = 96;
  int n_heads = 4;
  int n_kv_heads = 2;
  int head_dim = 16;  // written as attention.key_length / value_length
  int vocab_size = 97;
  int context_length = 256;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  int sliding_window = 4;    // gemma3 only
  bool tied_output = false;  // no output.weight: logits use token_embd
  // Written as {arch}.vocab_size; -1: vocab_size; 0: key not written.
  int vocab_size_key = -1;
  uint32_t seed = 1;
  // Metadata keys or tensor names to leave out (for loader error tests).
  std::set<std::string> omit;
};

// 2 layers, hidden 64, ffn 96, 4 heads, 2 KV heads, head_dim 16, vocab 97;
// for Q4_K / Q6_K: hidden 256, ffn 256, 4 x 64 heads (K-quant rows of 256).
TinyModelOptions TinyLlamaOptions(kernels::GgmlType weight_type = kernels::GgmlType::kF32);

// 6 layers (0-4 sliding, 5 global), hidden 64, ffn 96, 4 heads of 32 (so
// n_heads * head_dim != hidden), 1 KV head, sliding window 4, global RoPE
// base 1e6, eps 1e-6; K-quants as for llama with 4 x 64 heads.
TinyModelOptions TinyGemma3Options(kernels::GgmlType weight_type = kernels::GgmlType::kF32);

// The model as a GGUF writer (add or patch more before Build).
GgufWriter TinyModelWriter(const TinyModelOptions& options);

// A parsed image plus the loader's view of it; the spec's weight views
// point into `file`, so keep the TinyModel alive while they are used.
struct TinyModel {
  std::unique_ptr<engine::GgufFile> file;
  engine::LoadedModelSpec spec;
};
absl::StatusOr<TinyModel> LoadTinyModel(const TinyModelOptions& options);

}  // namespace conclave::testing

#endif  // CONCLAVE_TESTS_TESTING_TINY_MODEL_H_
