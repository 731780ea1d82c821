#include "engine/model/model_loader.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace conclave::engine {
namespace {

// The tensors every layer has (attn_norm, attn_q/k/v/output, ffn_norm,
// ffn_gate/up/down).
constexpr int64_t kTensorsPerLayer = 9;

using kernels::Architecture;
using kernels::ModelConfig;
using kernels::WeightTensor;

absl::StatusOr<int64_t> RequireInt(const GgufFile& f, const std::string& key) {
  std::optional<int64_t> v = f.GetInt(key);
  if (!v.has_value()) return absl::InvalidArgumentError(absl::StrCat("GGUF lacks integer key ", key));
  if (*v <= 0 || *v > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF key ", key, "=", *v, " out of range"));
  }
  return *v;
}

// Looks up `name`; absent tensors give an empty view when optional.
absl::StatusOr<WeightTensor> Tensor(const GgufFile& f, const std::string& name,
                                    bool required = true) {
  WeightTensor w;
  w.name = name;
  const GgufTensorInfo* info = f.FindTensor(name);
  if (info == nullptr) {
    if (required) return absl::InvalidArgumentError(absl::StrCat("GGUF lacks tensor ", name));
    return w;
  }
  w.type = info->type;
  w.dims = info->dims;
  w.data = f.TensorData(*info);
  return w;
}

}  // namespace

absl::StatusOr<LoadedModelSpec> LoadModelSpec(const GgufFile& f) {
  std::optional<std::string> arch_name = f.GetString("general.architecture");
  if (!arch_name.has_value()) return absl::InvalidArgumentError("GGUF lacks general.architecture");
  LoadedModelSpec spec;
  ModelConfig& c = spec.config;
  const std::string& a = *arch_name;
  if (a == "llama") {
    c.arch = Architecture::kLlama;
  } else if (a == "gemma3") {
    c.arch = Architecture::kGemma3;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported architecture '", a, "' (supported: llama, gemma3)"));
  }
  auto get = [&](const std::string& key, int* out) -> absl::Status {
    absl::StatusOr<int64_t> v = RequireInt(f, absl::StrCat(a, ".", key));
    if (!v.ok()) return v.status();
    *out = static_cast<int>(*v);
    return absl::OkStatus();
  };
  for (absl::Status s : {get("block_count", &c.n_layers), get("embedding_length", &c.hidden),
                         get("feed_forward_length", &c.ffn_hidden),
                         get("attention.head_count", &c.n_heads),
                         get("context_length", &c.context_length)}) {
    if (!s.ok()) return s;
  }
  // A layer count the file cannot hold fails before anything is sized by it.
  if (c.n_layers > static_cast<int64_t>(f.tensors().size()) / kTensorsPerLayer) {
    return absl::InvalidArgumentError(absl::StrCat(
        a, ".block_count=", c.n_layers, " needs at least ", kTensorsPerLayer,
        " tensors per layer; the file has ", f.tensors().size(), " tensors"));
  }
  c.n_kv_heads = static_cast<int>(f.GetInt(a + ".attention.head_count_kv").value_or(c.n_heads));
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head_count=", c.n_heads, " is not a multiple of head_count_kv=", c.n_kv_heads));
  }
  c.head_dim = static_cast<int>(f.GetInt(a + ".attention.key_length").value_or(c.hidden / c.n_heads));
  const int64_t value_length = f.GetInt(a + ".attention.value_length").value_or(c.head_dim);
  if (value_length != c.head_dim) {
    return absl::InvalidArgumentError("attention.value_length != key_length is not supported");
  }
  c.rope_dims = static_cast<int>(f.GetInt(a + ".rope.dimension_count").value_or(c.head_dim));
  c.rms_eps = static_cast<float>(f.GetFloat(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(f.GetFloat(a + ".rope.freq_base").value_or(10000.0));
  c.rope_theta_local = c.rope_theta;
  c.layer_is_sliding.assign(c.n_layers, false);

  if (c.arch == Architecture::kGemma3) {
    // llama.cpp GEMMA3: 5 sliding-window layers then 1 global, local RoPE base
    // 10000, NEOX RoPE, embeddings scaled by sqrt(hidden), Q scaled by
    // 1/sqrt(head_dim) (see ../shared/REFERENCE.md section 4).
    c.sliding_window = static_cast<int>(f.GetInt(a + ".attention.sliding_window").value_or(512));
    for (int l = 0; l < c.n_layers; ++l) c.layer_is_sliding[l] = (l % 6) < 5;
    c.rope_theta_local = 10000.0f;
    c.rope_neox = true;
    c.embedding_scale = sqrtf(static_cast<float>(c.hidden));
    c.query_scale = 1.0f / sqrtf(static_cast<float>(c.head_dim));
  }

  absl::StatusOr<WeightTensor> embd = Tensor(f, "token_embd.weight");
  if (!embd.ok()) return embd.status();
  spec.weights.token_embd = *embd;
  c.vocab_size = static_cast<int>(embd->rows());
  if (std::optional<int64_t> v = f.GetInt(a + ".vocab_size"); v.has_value() && *v != c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        a, ".vocab_size=", *v, " but token_embd.weight has ", c.vocab_size, " rows"));
  }
  absl::StatusOr<WeightTensor> out = Tensor(f, "output.weight", /*required=*/false);
  if (!out.ok()) return out.status();
  spec.weights.output = out->present() ? *out : *embd;  // tied embeddings
  absl::StatusOr<WeightTensor> out_norm = Tensor(f, "output_norm.weight");
  if (!out_norm.ok()) return out_norm.status();
  spec.weights.output_norm = *out_norm;

  const bool gemma = c.arch == Architecture::kGemma3;
  spec.weights.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    kernels::LayerWeights& lw = spec.weights.layers[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    struct Slot {
      WeightTensor* dst;
      const char* name;
      bool required;
    };
    const Slot slots[] = {
        {&lw.attn_norm, "attn_norm", true},   {&lw.attn_q, "attn_q", true},
        {&lw.attn_k, "attn_k", true},         {&lw.attn_v, "attn_v", true},
        {&lw.attn_output, "attn_output", true}, {&lw.ffn_norm, "ffn_norm", true},
        {&lw.ffn_gate, "ffn_gate", true},     {&lw.ffn_up, "ffn_up", true},
        {&lw.ffn_down, "ffn_down", true},     {&lw.attn_q_norm, "attn_q_norm", gemma},
        {&lw.attn_k_norm, "attn_k_norm", gemma},
        {&lw.post_attention_norm, "post_attention_norm", gemma},
        {&lw.post_ffw_norm, "post_ffw_norm", gemma},
    };
    for (const Slot& slot : slots) {
      absl::StatusOr<WeightTensor> t = Tensor(f, p + slot.name + ".weight", slot.required);
      if (!t.ok()) return t.status();
      *slot.dst = *t;
    }
  }
  return spec;
}

}  // namespace conclave::engine
