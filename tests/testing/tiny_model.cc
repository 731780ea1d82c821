#include "tests/testing/tiny_model.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"

namespace conclave::testing {
namespace {

using kernels::Architecture;
using kernels::GgmlType;
using kernels::Half;

bool IsKQuant(GgmlType t) { return t == GgmlType::kQ4_K || t == GgmlType::kQ6_K; }

// Byte offsets of a block's fp16 scale fields (ggml-common.h): `d`, and the
// offset field (`m` / `dmin`, or -1) that the block subtracts.
struct ScaleFields {
  int d = -1;
  int offset = -1;
};
ScaleFields ScaleFieldsOf(GgmlType t) {
  switch (t) {
    case GgmlType::kQ8_0: return {0, -1};
    case GgmlType::kQ4_1: return {0, 2};
    case GgmlType::kQ4_K: return {0, 2};
    case GgmlType::kQ6_K: return {208, -1};
    default: CHECK(false) << "tiny models have no generator for " << kernels::TypeName(t);
  }
  return {};
}

void PutHalf(std::string& bytes, size_t at, float v) {
  const Half h = kernels::cpu::Fp32ToFp16(v);
  std::memcpy(&bytes[at], &h, 2);
}
float GetHalf(const std::string& bytes, size_t at) {
  Half h;
  std::memcpy(&h, &bytes[at], 2);
  return kernels::cpu::Fp16ToFp32(h);
}

// Random [rows, cols] matrix of `type` whose dequantized values have a
// root-mean-square of about `target_rms` and mean about 0 (so products stay
// O(1) and softmaxes are not saturated). Quantized: random quants, per-block
// scales varying by 2x, offsets (`m`, `dmin`) that centre the block.
std::string RandomMatrix(GgmlType type, int64_t cols, int64_t rows, float target_rms,
                         std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  if (type == GgmlType::kF32) {
    std::string bytes(cols * rows * sizeof(float), '\0');
    const float a = target_rms * std::sqrt(3.0f);
    for (int64_t i = 0; i < cols * rows; ++i) {
      const float v = a * unit(rng);
      std::memcpy(&bytes[i * sizeof(float)], &v, sizeof(float));
    }
    return bytes;
  }
  const kernels::TypeTraits& t = kernels::TraitsOf(type);
  const size_t row_bytes = kernels::RowBytes(type, cols);
  std::string bytes(row_bytes * rows, '\0');
  std::uniform_int_distribution<int> byte(0, 255);
  for (char& c : bytes) c = static_cast<char>(byte(rng));
  const ScaleFields f = ScaleFieldsOf(type);
  std::uniform_real_distribution<float> spread(0.5f, 1.0f);
  // Centering offsets: Q4_1 is d*q + m with q in [0, 16): m = -7.5 d.
  // Q4_K is d*sc*q - dmin*mn with sc, mn in [0, 64): dmin = 7.5 d.
  const float offset_ratio = type == GgmlType::kQ4_1 ? -7.5f : 7.5f;
  for (size_t b = 0; b < bytes.size(); b += t.block_bytes) {
    const float d = spread(rng);
    PutHalf(bytes, b + f.d, d);
    if (f.offset >= 0) PutHalf(bytes, b + f.offset, offset_ratio * d);
  }
  // Measure, then rescale every block's scale fields to hit target_rms.
  std::vector<float> row(cols);
  double sum_sq = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    kernels::cpu::DequantizeRow(type, bytes.data() + r * row_bytes, row.data(), cols);
    for (float v : row) sum_sq += double{v} * v;
  }
  const float factor = target_rms / static_cast<float>(std::sqrt(sum_sq / (cols * rows)));
  for (size_t b = 0; b < bytes.size(); b += t.block_bytes) {
    PutHalf(bytes, b + f.d, GetHalf(bytes, b + f.d) * factor);
    if (f.offset >= 0) PutHalf(bytes, b + f.offset, GetHalf(bytes, b + f.offset) * factor);
  }
  return bytes;
}

// Norm weights around 1 (GGUF stores Gemma's as 1 + w already).
std::vector<float> RandomNorm(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(0.8f, 1.2f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace

TinyModelOptions TinyLlamaOptions(GgmlType weight_type) {
  TinyModelOptions o;
  o.arch = Architecture::kLlama;
  o.weight_type = weight_type;
  if (IsKQuant(weight_type)) {
    o.hidden = 256;
    o.ffn_hidden = 256;
    o.head_dim = 64;
  }
  return o;
}

TinyModelOptions TinyGemma3Options(GgmlType weight_type) {
  TinyModelOptions o;
  o.arch = Architecture::kGemma3;
  o.weight_type = weight_type;
  o.n_layers = 6;
  o.n_heads = 4;
  o.n_kv_heads = 1;
  o.head_dim = 32;
  o.rope_theta = 1e6f;
  o.rms_eps = 1e-6f;
  o.sliding_window = 4;
  if (IsKQuant(weight_type)) {
    o.hidden = 256;
    o.ffn_hidden = 256;
    o.head_dim = 64;
  }
  return o;
}

GgufWriter TinyModelWriter(const TinyModelOptions& o) {
  const std::string a = o.arch == Architecture::kGemma3 ? "gemma3" : "llama";
  const bool gemma = o.arch == Architecture::kGemma3;
  GgufWriter w;
  auto keep = [&](const std::string& name) { return o.omit.count(name) == 0; };
  auto u32 = [&](const std::string& key, uint32_t v) {
    if (keep(key)) w.AddUint32(key, v);
  };
  auto f32 = [&](const std::string& key, float v) {
    if (keep(key)) w.AddFloat32(key, v);
  };
  if (keep("general.architecture")) w.AddString("general.architecture", a);
  u32(a + ".block_count", o.n_layers);
  u32(a + ".context_length", o.context_length);
  u32(a + ".embedding_length", o.hidden);
  u32(a + ".feed_forward_length", o.ffn_hidden);
  u32(a + ".attention.head_count", o.n_heads);
  u32(a + ".attention.head_count_kv", o.n_kv_heads);
  u32(a + ".attention.key_length", o.head_dim);
  u32(a + ".attention.value_length", o.head_dim);
  u32(a + ".rope.dimension_count", o.head_dim);
  f32(a + ".attention.layer_norm_rms_epsilon", o.rms_eps);
  f32(a + ".rope.freq_base", o.rope_theta);
  if (gemma) u32(a + ".attention.sliding_window", o.sliding_window);
  const int vocab_key = o.vocab_size_key < 0 ? o.vocab_size : o.vocab_size_key;
  if (vocab_key > 0) u32(a + ".vocab_size", vocab_key);

  std::mt19937 rng(o.seed);
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows, float rms) {
    const std::string bytes = RandomMatrix(o.weight_type, cols, rows, rms, rng);
    if (keep(name)) w.AddTensor(name, {cols, rows}, o.weight_type, bytes);
  };
  auto norm = [&](const std::string& name, int64_t n) {
    const std::vector<float> v = RandomNorm(n, rng);
    if (keep(name)) w.AddF32Tensor(name, {n}, v);
  };
  // Rows of a matrix with `cols` inputs get rms 1/sqrt(cols): unit-rms
  // inputs give unit-rms outputs.
  auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
  const int64_t q_dim = int64_t{o.n_heads} * o.head_dim;
  const int64_t kv_dim = int64_t{o.n_kv_heads} * o.head_dim;
  matrix("token_embd.weight", o.hidden, o.vocab_size, 1.0f);
  norm("output_norm.weight", o.hidden);
  if (!o.tied_output) matrix("output.weight", o.hidden, o.vocab_size, inv_sqrt(o.hidden));
  for (int l = 0; l < o.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    norm(p + "attn_norm.weight", o.hidden);
    matrix(p + "attn_q.weight", o.hidden, q_dim, inv_sqrt(o.hidden));
    matrix(p + "attn_k.weight", o.hidden, kv_dim, inv_sqrt(o.hidden));
    matrix(p + "attn_v.weight", o.hidden, kv_dim, inv_sqrt(o.hidden));
    matrix(p + "attn_output.weight", q_dim, o.hidden, inv_sqrt(q_dim));
    norm(p + "ffn_norm.weight", o.hidden);
    matrix(p + "ffn_gate.weight", o.hidden, o.ffn_hidden, inv_sqrt(o.hidden));
    matrix(p + "ffn_up.weight", o.hidden, o.ffn_hidden, inv_sqrt(o.hidden));
    matrix(p + "ffn_down.weight", o.ffn_hidden, o.hidden, inv_sqrt(o.ffn_hidden));
    if (gemma) {
      norm(p + "attn_q_norm.weight", o.head_dim);
      norm(p + "attn_k_norm.weight", o.head_dim);
      norm(p + "post_attention_norm.weight", o.hidden);
      norm(p + "post_ffw_norm.weight", o.hidden);
    }
  }
  return w;
}

absl::StatusOr<TinyModel> LoadTinyModel(const TinyModelOptions& options) {
  TinyModel m;
  absl::StatusOr<std::unique_ptr<engine::GgufFile>> file =
      engine::GgufFile::FromBytes(TinyModelWriter(options).Build());
  if (!file.ok()) return file.status();
  m.file = std::move(*file);
  absl::StatusOr<engine::LoadedModelSpec> spec = engine::LoadModelSpec(*m.file);
  if (!spec.ok()) return spec.status();
  m.spec = std::move(*spec);
  return m;
}

}  // namespace conclave::testing
