// What a backend needs to run a decoder-only transformer: its hyperparameters
// and views of its weight tensors (in their stored, possibly quantized,
// format). Built by engine/model/model_loader from a GGUF file; the backend
// never sees the file format itself.
#ifndef CONCLAVE_KERNELS_MODEL_SPEC_H_
#define CONCLAVE_KERNELS_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"

namespace conclave::kernels {

enum class Architecture {
  kLlama,   // RMSNorm, RoPE (interleaved pairs), GQA, SwiGLU (SmolLM2, Llama)
  kGemma3,  // + QK-norm, post-norms, GELU-tanh, sliding-window layers, NEOX RoPE
};

// A weight tensor in its stored format. dims[0] is the row length (ne0):
// a matrix with dims {cols, rows} holds `rows` rows of `cols` elements.
// `data` is borrowed (usually a read-only mapping of the model file).
struct WeightTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> dims;
  const void* data = nullptr;

  int64_t cols() const { return dims.empty() ? 0 : dims[0]; }
  int64_t rows() const { return dims.size() < 2 ? 1 : dims[1]; }
  bool present() const { return data != nullptr; }
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int n_layers = 0;
  int hidden = 0;       // embedding length
  int ffn_hidden = 0;   // feed-forward length
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;     // per head, for Q and K (and V)
  int vocab_size = 0;
  int context_length = 0;  // trained maximum positions
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;        // global (full-attention) layers
  float rope_theta_local = 10000.0f;  // sliding-window layers (Gemma 3)
  int rope_dims = 0;                  // rotated dims per head (<= head_dim)
  bool rope_neox = false;             // rotate (i, i + d/2) instead of (2i, 2i+1)
  int sliding_window = 0;             // 0: no sliding-window layers
  std::vector<bool> layer_is_sliding; // [n_layers]
  float embedding_scale = 1.0f;       // x = embed * scale (Gemma: sqrt(hidden))
  // 0: scores are scaled by 1/sqrt(head_dim) inside the softmax (Llama).
  // Otherwise Q is multiplied by it after RoPE and scores are not scaled
  // again (Gemma 3: 1/sqrt(head_dim), applied as ggml_scale on Q).
  float query_scale = 0.0f;
};

struct LayerWeights {
  WeightTensor attn_norm;      // [hidden]
  WeightTensor attn_q;         // [hidden] -> [n_heads * head_dim]
  WeightTensor attn_k;         // [hidden] -> [n_kv_heads * head_dim]
  WeightTensor attn_v;         // [hidden] -> [n_kv_heads * head_dim]
  WeightTensor attn_output;    // [n_heads * head_dim] -> [hidden]
  WeightTensor ffn_norm;       // [hidden]
  WeightTensor ffn_gate;       // [hidden] -> [ffn_hidden]
  WeightTensor ffn_up;         // [hidden] -> [ffn_hidden]
  WeightTensor ffn_down;       // [ffn_hidden] -> [hidden]
  // Gemma 3 only (absent otherwise).
  WeightTensor attn_q_norm;          // [head_dim]
  WeightTensor attn_k_norm;          // [head_dim]
  WeightTensor post_attention_norm;  // [hidden]
  WeightTensor post_ffw_norm;        // [hidden]
};

struct ModelWeights {
  WeightTensor token_embd;   // [hidden] x vocab rows
  WeightTensor output_norm;  // [hidden]
  WeightTensor output;       // [hidden] x vocab rows (== token_embd when tied)
  std::vector<LayerWeights> layers;
};

}  // namespace conclave::kernels

#endif  // CONCLAVE_KERNELS_MODEL_SPEC_H_
