#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/check.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"

namespace conclave::kernels::cpu {
namespace {

// Upper bound on head_dim for the fixed-size buffers in attention.cc.
constexpr int kMaxHeadDim = 512;

absl::Status CheckMatrix(const WeightTensor& w, int64_t cols, int64_t rows) {
  if (!w.present()) return absl::InvalidArgumentError(absl::StrCat("missing tensor ", w.name));
  if (!IsSupportedWeightType(w.type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", w.name, " has type ", TypeName(w.type),
        " which the CPU backend cannot multiply"));
  }
  if (w.cols() != cols || w.rows() != rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", w.name, " is [", w.cols(), ", ", w.rows(), "], expected [",
        cols, ", ", rows, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckVector(const WeightTensor& w, int64_t n) {
  if (!w.present()) return absl::InvalidArgumentError(absl::StrCat("missing tensor ", w.name));
  if (w.type != GgmlType::kF32 || w.cols() != n || w.rows() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", w.name, " must be F32 [", n, "], is ", TypeName(w.type),
        " [", w.cols(), ", ", w.rows(), "]"));
  }
  return absl::OkStatus();
}

const float* F32(const WeightTensor& w) { return static_cast<const float*>(w.data); }

}  // namespace

// Activations of one step, sized for the largest batch seen so far.
struct CpuBackend::Scratch {
  int capacity = 0;             // tokens
  std::vector<float> x;         // [T, hidden] residual stream
  std::vector<float> h;         // [T, hidden] normed input of a block
  std::vector<float> q;         // [T, n_heads * head_dim]
  std::vector<float> k;         // [T, n_kv_heads * head_dim]
  std::vector<float> v;         // [T, n_kv_heads * head_dim]
  std::vector<float> att;       // [T, n_heads * head_dim]
  std::vector<float> o;         // [T, hidden]
  std::vector<float> gate;      // [T, ffn_hidden]
  std::vector<float> up;        // [T, ffn_hidden]
  std::vector<std::vector<float>> scores;  // per thread: [max positions]
  std::vector<int> token_owner;  // [T] index of the token's sequence in the batch
  MatMulScratch matmul;

  void Reserve(const ModelConfig& c, int tokens, int threads) {
    if (tokens <= capacity) return;
    capacity = tokens;
    const int64_t t = tokens;
    x.resize(t * c.hidden);
    h.resize(t * c.hidden);
    q.resize(t * c.n_heads * c.head_dim);
    k.resize(t * c.n_kv_heads * c.head_dim);
    v.resize(t * c.n_kv_heads * c.head_dim);
    att.resize(t * c.n_heads * c.head_dim);
    o.resize(t * c.hidden);
    gate.resize(t * c.ffn_hidden);
    up.resize(t * c.ffn_hidden);
    scores.resize(threads);
  }
};

CpuBackend::CpuBackend(int n_threads)
    : pool_(n_threads), scratch_(std::make_unique<Scratch>()) {}

CpuBackend::~CpuBackend() = default;

absl::Status CpuBackend::LoadModel(const ModelConfig& c, const ModelWeights& w) {
  if (c.n_layers <= 0 || c.hidden <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab_size <= 0 || c.ffn_hidden <= 0) {
    return absl::InvalidArgumentError("model config has a non-positive dimension");
  }
  if (c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n_heads=", c.n_heads, " must be a multiple of n_kv_heads=", c.n_kv_heads,
        " and at most 16 times it"));
  }
  if (c.head_dim > kMaxHeadDim || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head_dim=", c.head_dim, " rope_dims=", c.rope_dims,
        " unsupported (head_dim <= ", kMaxHeadDim, ", rope_dims even and <= head_dim)"));
  }
  if (static_cast<int>(w.layers.size()) != c.n_layers ||
      static_cast<int>(c.layer_is_sliding.size()) != c.n_layers) {
    return absl::InvalidArgumentError("layer count of weights and config differ");
  }
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  if (absl::Status s = CheckMatrix(w.token_embd, c.hidden, c.vocab_size); !s.ok()) return s;
  if (absl::Status s = CheckMatrix(w.output, c.hidden, c.vocab_size); !s.ok()) return s;
  if (absl::Status s = CheckVector(w.output_norm, c.hidden); !s.ok()) return s;
  const bool gemma = c.arch == Architecture::kGemma3;
  for (const LayerWeights& l : w.layers) {
    for (absl::Status s : {CheckVector(l.attn_norm, c.hidden), CheckVector(l.ffn_norm, c.hidden),
                           CheckMatrix(l.attn_q, c.hidden, q_dim),
                           CheckMatrix(l.attn_k, c.hidden, kv_dim),
                           CheckMatrix(l.attn_v, c.hidden, kv_dim),
                           CheckMatrix(l.attn_output, q_dim, c.hidden),
                           CheckMatrix(l.ffn_gate, c.hidden, c.ffn_hidden),
                           CheckMatrix(l.ffn_up, c.hidden, c.ffn_hidden),
                           CheckMatrix(l.ffn_down, c.ffn_hidden, c.hidden)}) {
      if (!s.ok()) return s;
    }
    if (gemma) {
      for (absl::Status s : {CheckVector(l.attn_q_norm, c.head_dim),
                             CheckVector(l.attn_k_norm, c.head_dim),
                             CheckVector(l.post_attention_norm, c.hidden),
                             CheckVector(l.post_ffw_norm, c.hidden)}) {
        if (!s.ok()) return s;
      }
    }
  }
  config_ = c;
  weights_ = w;
  loaded_ = true;
  k_cache_.clear();
  v_cache_.clear();
  kv_config_ = KvCacheConfig{};
  return absl::OkStatus();
}

int64_t CpuBackend::KvBytesPerBlock() const {
  return 2 * int64_t{config_.n_layers} * kv_config_.block_size *
         config_.n_kv_heads * config_.head_dim * KvDtypeBytes(kv_config_.dtype);
}

absl::Status CpuBackend::AllocateKvCache(const KvCacheConfig& kv) {
  if (!loaded_) return absl::FailedPreconditionError("AllocateKvCache before LoadModel");
  if (kv.num_blocks <= 0 || kv.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache needs positive num_blocks and block_size, got ", kv.num_blocks,
        " and ", kv.block_size));
  }
  const int64_t per_layer = int64_t{kv.num_blocks} * kv.block_size *
                            config_.n_kv_heads * config_.head_dim;
  k_cache_.assign(config_.n_layers, {});
  v_cache_.assign(config_.n_layers, {});
  try {
    for (int l = 0; l < config_.n_layers; ++l) {
      k_cache_[l].assign(per_layer, 0);
      v_cache_[l].assign(per_layer, 0);
    }
  } catch (const std::bad_alloc&) {
    k_cache_.clear();
    v_cache_.clear();
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache of ", kv.num_blocks, " blocks x ", kv.block_size,
        " tokens does not fit in memory"));
  }
  kv_config_ = kv;
  return absl::OkStatus();
}

void CpuBackend::CopyBlocks(absl::Span<const std::pair<int, int>> src_dst) {
  const int64_t block_elems = int64_t{kv_config_.block_size} * config_.n_kv_heads * config_.head_dim;
  for (const auto& [src, dst] : src_dst) {
    CHECK(src >= 0 && src < kv_config_.num_blocks && dst >= 0 && dst < kv_config_.num_blocks)
        << "CopyBlocks " << src << " -> " << dst << " outside pool of " << kv_config_.num_blocks;
    for (int l = 0; l < config_.n_layers; ++l) {
      std::memcpy(k_cache_[l].data() + dst * block_elems, k_cache_[l].data() + src * block_elems,
                  block_elems * sizeof(Half));
      std::memcpy(v_cache_[l].data() + dst * block_elems, v_cache_[l].data() + src * block_elems,
                  block_elems * sizeof(Half));
    }
  }
}

absl::Status CpuBackend::ValidateBatch(const StepBatch& batch, size_t logits_size) const {
  if (!loaded_) return absl::FailedPreconditionError("Forward before LoadModel");
  if (k_cache_.empty()) return absl::FailedPreconditionError("Forward before AllocateKvCache");
  for (int32_t t : batch.tokens) {
    if (t < 0 || t >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", t, " outside vocabulary of ", config_.vocab_size));
    }
  }
  size_t want = 0;
  int64_t covered = 0;
  for (const SequenceStep& s : batch.sequences) {
    if (s.num_tokens <= 0 || s.token_begin < 0 || s.start_pos < 0 ||
        s.token_begin + int64_t{s.num_tokens} > static_cast<int64_t>(batch.tokens.size())) {
      return absl::InvalidArgumentError("sequence step outside the batch's tokens");
    }
    if (s.token_begin != covered) {
      return absl::InvalidArgumentError("sequence steps must tile the batch's tokens in order");
    }
    covered += s.num_tokens;
    const int64_t end_pos = int64_t{s.start_pos} + s.num_tokens;
    const int64_t blocks_needed = (end_pos + kv_config_.block_size - 1) / kv_config_.block_size;
    if (static_cast<int64_t>(s.block_table.size()) < blocks_needed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block table of ", s.block_table.size(), " blocks does not cover position ",
          end_pos - 1));
    }
    for (int64_t i = 0; i < blocks_needed; ++i) {
      if (s.block_table[i] < 0 || s.block_table[i] >= kv_config_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block id ", s.block_table[i], " outside pool of ", kv_config_.num_blocks));
      }
    }
    if (s.want_logits) ++want;
  }
  if (covered != static_cast<int64_t>(batch.tokens.size())) {
    return absl::InvalidArgumentError("batch has tokens that belong to no sequence");
  }
  if (logits_size < want * config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logits buffer of ", logits_size, " floats is smaller than ", want, " x ",
        config_.vocab_size));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Forward(const StepBatch& batch, absl::Span<float> logits) {
  if (absl::Status s = ValidateBatch(batch, logits.size()); !s.ok()) return s;
  const int n_tokens = static_cast<int>(batch.tokens.size());
  if (n_tokens == 0) return absl::OkStatus();
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  s.Reserve(c, n_tokens, pool_.size());

  // Embeddings. x: [T, hidden]
  pool_.ParallelFor(n_tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* xt = s.x.data() + t * c.hidden;
      GetRow(weights_.token_embd, batch.tokens[t], xt);
      if (c.embedding_scale != 1.0f) {
        for (int i = 0; i < c.hidden; ++i) xt[i] *= c.embedding_scale;
      }
    }
  });

  // Rows whose logits are wanted, in batch order.
  std::vector<int> out_rows;
  for (const SequenceStep& seq : batch.sequences) {
    if (seq.want_logits) out_rows.push_back(seq.token_begin + seq.num_tokens - 1);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    RunLayer(l, batch, n_tokens, l == c.n_layers - 1, out_rows);
  }
  const int n_out = static_cast<int>(out_rows.size());
  if (n_out == 0) return absl::OkStatus();
  // After the last layer x holds only the output rows: [n_out, hidden].
  RmsNorm(s.x.data(), F32(weights_.output_norm), s.h.data(), n_out, c.hidden, c.rms_eps);
  MatMul(weights_.output, s.h.data(), logits.data(), n_out, s.matmul, pool_);
  return absl::OkStatus();
}

void CpuBackend::RunLayer(int layer, const StepBatch& batch, int n_tokens,
                          bool last_layer, std::vector<int>& out_rows) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[layer];
  Scratch& s = *scratch_;
  const int hidden = c.hidden;
  const bool gemma = c.arch == Architecture::kGemma3;

  // Attention block. h: [T, hidden]; q: [T, n_heads*hd]; k, v: [T, n_kv*hd]
  RmsNorm(s.x.data(), F32(w.attn_norm), s.h.data(), n_tokens, hidden, c.rms_eps);
  const MatMulOutput qkv[3] = {{&w.attn_q, s.q.data()}, {&w.attn_k, s.k.data()},
                               {&w.attn_v, s.v.data()}};
  MatMulShared(qkv, s.h.data(), n_tokens, s.matmul, pool_);
  Attention(layer, batch);
  // o: [T, hidden]
  MatMul(w.attn_output, s.att.data(), s.o.data(), n_tokens, s.matmul, pool_);
  if (gemma) {
    RmsNorm(s.o.data(), F32(w.post_attention_norm), s.o.data(), n_tokens, hidden, c.rms_eps);
  }

  int n = n_tokens;
  if (last_layer) {
    // Only the rows that produce logits go through the last feed-forward
    // (as llama.cpp's inp_out_ids): compact x and o to [n_out, hidden].
    n = static_cast<int>(out_rows.size());
    for (int i = 0; i < n; ++i) {
      std::memmove(s.x.data() + int64_t{i} * hidden, s.x.data() + int64_t{out_rows[i]} * hidden,
                   hidden * sizeof(float));
      std::memmove(s.o.data() + int64_t{i} * hidden, s.o.data() + int64_t{out_rows[i]} * hidden,
                   hidden * sizeof(float));
    }
    if (n == 0) return;
  }
  for (int64_t i = 0; i < int64_t{n} * hidden; ++i) s.x[i] += s.o[i];

  // Feed-forward block. gate, up: [n, ffn_hidden]
  RmsNorm(s.x.data(), F32(w.ffn_norm), s.h.data(), n, hidden, c.rms_eps);
  const MatMulOutput gate_up[2] = {{&w.ffn_gate, s.gate.data()}, {&w.ffn_up, s.up.data()}};
  MatMulShared(gate_up, s.h.data(), n, s.matmul, pool_);
  const int64_t ffn_elems = int64_t{n} * c.ffn_hidden;
  if (gemma) {
    GeGlu(s.gate.data(), s.up.data(), s.gate.data(), ffn_elems);
  } else {
    SwiGlu(s.gate.data(), s.up.data(), s.gate.data(), ffn_elems);
  }
  MatMul(w.ffn_down, s.gate.data(), s.o.data(), n, s.matmul, pool_);
  if (gemma) {
    RmsNorm(s.o.data(), F32(w.post_ffw_norm), s.o.data(), n, hidden, c.rms_eps);
  }
  for (int64_t i = 0; i < int64_t{n} * hidden; ++i) s.x[i] += s.o[i];
}

void CpuBackend::Attention(int layer, const StepBatch& batch) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[layer];
  Scratch& s = *scratch_;
  const int hd = c.head_dim;
  const int q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const bool sliding = c.sliding_window > 0 && c.layer_is_sliding[layer];
  const float freq_base = sliding ? c.rope_theta_local : c.rope_theta;
  const int bs = kv_config_.block_size;
  Half* k_pool = k_cache_[layer].data();
  Half* v_pool = v_cache_[layer].data();
  const bool bf16 = kv_config_.dtype == KvDtype::kBF16;

  // Which sequence each of the step's tokens belongs to, so that the work
  // below is split over all of the step's tokens at once (a decode step of
  // many sequences is one parallel loop, not one per sequence).
  std::vector<int>& owner = s.token_owner;
  owner.resize(batch.tokens.size());
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const SequenceStep& seq = batch.sequences[i];
    std::fill(owner.begin() + seq.token_begin, owner.begin() + seq.token_begin + seq.num_tokens,
              static_cast<int>(i));
  }
  const int64_t n_tokens = static_cast<int64_t>(batch.tokens.size());

  // Per token: QK-norm (Gemma), RoPE, Q pre-scale, and K/V into the cache.
  pool_.ParallelFor(n_tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const SequenceStep& seq = batch.sequences[owner[t]];
      const int64_t pos = seq.start_pos + (t - seq.token_begin);
      float* q = s.q.data() + t * q_dim;
      float* k = s.k.data() + t * kv_dim;
      const float* v = s.v.data() + t * kv_dim;
      if (c.arch == Architecture::kGemma3) {
        RmsNorm(q, F32(w.attn_q_norm), q, c.n_heads, hd, c.rms_eps);
        RmsNorm(k, F32(w.attn_k_norm), k, c.n_kv_heads, hd, c.rms_eps);
      }
      Rope(q, c.n_heads, hd, c.rope_dims, pos, freq_base, c.rope_neox);
      Rope(k, c.n_kv_heads, hd, c.rope_dims, pos, freq_base, c.rope_neox);
      if (c.query_scale != 0.0f) {
        for (int j = 0; j < q_dim; ++j) q[j] *= c.query_scale;
      }
      const int64_t slot = int64_t{seq.block_table[pos / bs]} * bs + pos % bs;
      Half* k_dst = k_pool + slot * kv_dim;
      Half* v_dst = v_pool + slot * kv_dim;
      if (bf16) {
        for (int j = 0; j < kv_dim; ++j) {
          k_dst[j] = Fp32ToBf16(k[j]);
          v_dst[j] = Fp32ToBf16(v[j]);
        }
      } else {
        for (int j = 0; j < kv_dim; ++j) {
          k_dst[j] = Fp32ToFp16(k[j]);
          v_dst[j] = Fp32ToFp16(v[j]);
        }
      }
    }
  });

  const KvLayerView view{k_pool, v_pool, bs, c.n_kv_heads, hd, kv_config_.dtype};
  AttentionParams base;
  base.n_heads = c.n_heads;
  base.score_scale = c.query_scale != 0.0f ? 1.0f : 1.0f / sqrtf(static_cast<float>(hd));
  base.sliding_window = sliding ? c.sliding_window : 0;
  int64_t max_pos = 0;
  for (const SequenceStep& seq : batch.sequences) {
    max_pos = std::max(max_pos, int64_t{seq.start_pos} + seq.num_tokens);
  }
  // Tokens are dealt round-robin: a prefill chunk's later tokens attend over
  // more keys, so contiguous ranges would be uneven.
  pool_.Run([&](int thread, int n_threads) {
    std::vector<float>& scores = s.scores[thread];
    const int64_t need = max_pos * (c.n_heads / c.n_kv_heads);
    if (static_cast<int64_t>(scores.size()) < need) scores.resize(need);
    AttentionParams params = base;
    for (int64_t t = thread; t < n_tokens; t += n_threads) {
      const SequenceStep& seq = batch.sequences[owner[t]];
      const int64_t pos = seq.start_pos + (t - seq.token_begin);
      // By position when the engine says where decoding began; else by the
      // sequence's token count in this step (never the whole step's, so
      // batching cannot change a sequence's logits).
      params.dot_order = seq.decode_from_pos >= 0
                             ? F16DotOrderFor(pos >= seq.decode_from_pos ? 1 : 2)
                             : F16DotOrderFor(seq.num_tokens);
      AttendOneToken(s.q.data() + t * q_dim, view, seq.block_table, pos, params,
                     s.att.data() + t * q_dim, scores.data());
    }
  });
}

}  // namespace conclave::kernels::cpu
