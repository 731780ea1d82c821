// CpuBackend on tiny random-weight Llama and Gemma 3 models: logits against a
// plain float64 forward written here from the architectures' definitions;
// bit-identical results whatever the batching, chunking, block placement or
// thread count; and the errors of invalid batches and models.
#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quantize.h"
#include "tests/testing/tiny_model.h"

namespace conclave::kernels::cpu {
namespace {

using ::conclave::testing::LoadTinyModel;
using ::conclave::testing::TinyGemma3Options;
using ::conclave::testing::TinyLlamaOptions;
using ::conclave::testing::TinyModel;
using ::conclave::testing::TinyModelOptions;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// The float64 reference forward. It reads the tensors straight from the GGUF
// file and takes every hyperparameter from the TinyModelOptions the file was
// written from, not from the loader's ModelConfig, so that it checks the
// loader's derived settings (sliding pattern, RoPE style and bases, scales)
// as well as the backend.
// ---------------------------------------------------------------------------

double RoundToHalf(double x) { return Fp16ToFp32(Fp32ToFp16(static_cast<float>(x))); }

struct ReferenceOptions {
  // Round where the backend deliberately rounds (its documented storage and
  // activation formats): activations quantized to the weight type's dot
  // type before each product, K, V, Q and the softmax probabilities to
  // fp16, GELU's input and output to fp16. Everything else stays float64.
  bool emulate_roundings = true;
};

class ReferenceModel {
 public:
  ReferenceModel(const TinyModelOptions& o, const engine::GgufFile& file, ReferenceOptions ro)
      : o_(o), file_(file), ro_(ro) {}

  // Logits of the last position of `tokens`: [vocab].
  std::vector<double> LastLogits(const std::vector<int32_t>& tokens) const {
    const bool gemma = o_.arch == Architecture::kGemma3;
    const int n = static_cast<int>(tokens.size());
    const int hd = o_.head_dim, q_dim = o_.n_heads * hd, kv_dim = o_.n_kv_heads * hd;
    const int group = o_.n_heads / o_.n_kv_heads;
    std::vector<std::vector<double>> x(n);
    const Matrix embd = Load("token_embd.weight");
    for (int t = 0; t < n; ++t) {
      x[t] = embd.Row(tokens[t]);
      // Gemma scales the embeddings by sqrt(hidden).
      if (gemma) {
        for (double& v : x[t]) v *= std::sqrt(static_cast<double>(o_.hidden));
      }
    }
    for (int l = 0; l < o_.n_layers; ++l) {
      const std::string p = absl::StrCat("blk.", l, ".");
      // Gemma 3: five sliding-window layers, then one global (l % 6 == 5);
      // local layers use RoPE base 10000, global ones rope.freq_base.
      const bool sliding = gemma && l % 6 != 5;
      const double base = sliding ? 10000.0 : o_.rope_theta;
      const int window = sliding ? o_.sliding_window : 0;
      const Matrix wq = Load(p + "attn_q.weight"), wk = Load(p + "attn_k.weight"),
                   wv = Load(p + "attn_v.weight"), wo = Load(p + "attn_output.weight");
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (int t = 0; t < n; ++t) {
        const std::vector<double> h = RmsNorm(x[t], Vector(p + "attn_norm.weight"));
        q[t] = MatVec(wq, h);
        k[t] = MatVec(wk, h);
        v[t] = MatVec(wv, h);
        if (gemma) {
          q[t] = PerHeadRmsNorm(q[t], Vector(p + "attn_q_norm.weight"));
          k[t] = PerHeadRmsNorm(k[t], Vector(p + "attn_k_norm.weight"));
        }
        Rope(q[t], t, base, /*neox=*/gemma);
        Rope(k[t], t, base, /*neox=*/gemma);
        // Gemma 3 scales Q by 1/sqrt(head_dim) instead of the scores.
        if (gemma) {
          for (double& e : q[t]) e /= std::sqrt(static_cast<double>(hd));
        }
        if (ro_.emulate_roundings) {
          for (double& e : q[t]) e = RoundToHalf(e);
          for (double& e : k[t]) e = RoundToHalf(e);
          for (double& e : v[t]) e = RoundToHalf(e);
        }
      }
      const double score_scale = gemma ? 1.0 : 1.0 / std::sqrt(static_cast<double>(hd));
      for (int t = 0; t < n; ++t) {
        std::vector<double> att(q_dim, 0.0);
        const int first = window > 0 ? std::max(0, t - window + 1) : 0;
        for (int h = 0; h < o_.n_heads; ++h) {
          const int kvh = h / group;
          std::vector<double> s(t + 1);
          double max_s = -1e300;
          for (int j = first; j <= t; ++j) {
            double dot = 0.0;
            for (int i = 0; i < hd; ++i) dot += q[t][h * hd + i] * k[j][kvh * hd + i];
            s[j] = dot * score_scale;
            max_s = std::max(max_s, s[j]);
          }
          double sum = 0.0;
          for (int j = first; j <= t; ++j) sum += (s[j] = std::exp(s[j] - max_s));
          for (int j = first; j <= t; ++j) {
            double prob = s[j] / sum;
            if (ro_.emulate_roundings) prob = RoundToHalf(prob);
            for (int i = 0; i < hd; ++i) att[h * hd + i] += prob * v[j][kvh * hd + i];
          }
        }
        std::vector<double> out = MatVec(wo, att);
        if (gemma) out = RmsNorm(out, Vector(p + "post_attention_norm.weight"));
        for (int i = 0; i < o_.hidden; ++i) x[t][i] += out[i];
      }
      const Matrix wg = Load(p + "ffn_gate.weight"), wu = Load(p + "ffn_up.weight"),
                   wd = Load(p + "ffn_down.weight");
      for (int t = 0; t < n; ++t) {
        const std::vector<double> h = RmsNorm(x[t], Vector(p + "ffn_norm.weight"));
        std::vector<double> g = MatVec(wg, h);
        const std::vector<double> u = MatVec(wu, h);
        for (int i = 0; i < o_.ffn_hidden; ++i) g[i] = (gemma ? Gelu(g[i]) : Silu(g[i])) * u[i];
        std::vector<double> out = MatVec(wd, g);
        if (gemma) out = RmsNorm(out, Vector(p + "post_ffw_norm.weight"));
        for (int i = 0; i < o_.hidden; ++i) x[t][i] += out[i];
      }
    }
    const std::vector<double> h = RmsNorm(x[n - 1], Vector("output_norm.weight"));
    return MatVec(Load(o_.tied_output ? "token_embd.weight" : "output.weight"), h);
  }

 private:
  struct Matrix {
    GgmlType type;
    int64_t cols = 0, rows = 0;
    std::vector<float> w;  // [rows, cols], dequantized
    std::vector<double> Row(int64_t r) const {
      return std::vector<double>(w.begin() + r * cols, w.begin() + (r + 1) * cols);
    }
  };

  Matrix Load(const std::string& name) const {
    const engine::GgufTensorInfo* info = file_.FindTensor(name);
    CHECK(info != nullptr) << name;
    Matrix m{info->type, info->dims[0], info->dims.size() > 1 ? info->dims[1] : 1, {}};
    m.w.resize(m.cols * m.rows);
    const size_t row_bytes = RowBytes(m.type, m.cols);
    for (int64_t r = 0; r < m.rows; ++r) {
      DequantizeRow(m.type, file_.TensorData(*info) + r * row_bytes, m.w.data() + r * m.cols,
                    m.cols);
    }
    return m;
  }
  std::vector<double> Vector(const std::string& name) const { return Load(name).Row(0); }

  std::vector<double> MatVec(const Matrix& m, const std::vector<double>& x) const {
    CHECK_EQ(static_cast<int64_t>(x.size()), m.cols);
    std::vector<double> in(x);
    if (ro_.emulate_roundings) {
      // The backend's activations are float, converted once per row to the
      // weight type's dot type (Q8_0 / Q8_1 / Q8_K, or float for F32).
      std::vector<float> f(x.begin(), x.end());
      const GgmlType at = ActivationTypeFor(m.type);
      if (at != GgmlType::kF32) {
        std::vector<uint8_t> buf(RowBytes(at, m.cols));
        QuantizeRow(at, f.data(), buf.data(), m.cols);
        DequantizeRow(at, buf.data(), f.data(), m.cols);
      }
      in.assign(f.begin(), f.end());
    }
    std::vector<double> y(m.rows, 0.0);
    for (int64_t r = 0; r < m.rows; ++r) {
      for (int64_t c = 0; c < m.cols; ++c) y[r] += double{m.w[r * m.cols + c]} * in[c];
    }
    return y;
  }

  std::vector<double> RmsNorm(const std::vector<double>& x, const std::vector<double>& w) const {
    double sum = 0.0;
    for (double v : x) sum += v * v;
    const double scale = 1.0 / std::sqrt(sum / x.size() + o_.rms_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
    return y;
  }

  std::vector<double> PerHeadRmsNorm(const std::vector<double>& x,
                                     const std::vector<double>& w) const {
    const int hd = o_.head_dim;
    std::vector<double> y;
    for (size_t h = 0; h < x.size() / hd; ++h) {
      const std::vector<double> head(x.begin() + h * hd, x.begin() + (h + 1) * hd);
      const std::vector<double> normed = RmsNorm(head, w);
      y.insert(y.end(), normed.begin(), normed.end());
    }
    return y;
  }

  // Pair i of each head turns by pos * base^(-2i / head_dim): pairs
  // (2i, 2i+1) for Llama (GGUF's permuted Q/K), (i, i + head_dim/2) for NEOX.
  void Rope(std::vector<double>& x, int pos, double base, bool neox) const {
    const int d = o_.head_dim;
    for (size_t h = 0; h < x.size() / d; ++h) {
      double* v = x.data() + h * d;
      for (int i = 0; i < d / 2; ++i) {
        const double theta = pos * std::pow(base, -2.0 * i / d);
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + d / 2 : 2 * i + 1;
        const double a = v[i0], b = v[i1];
        v[i0] = a * std::cos(theta) - b * std::sin(theta);
        v[i1] = a * std::sin(theta) + b * std::cos(theta);
      }
    }
  }

  static double Silu(double g) { return g / (1.0 + std::exp(-g)); }

  // GELU, tanh approximation; the backend (as ggml) looks it up in an fp16
  // table: input and output rounded to fp16, exact outside (-10, 10).
  double Gelu(double g) const {
    auto gelu = [](double x) {
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    };
    if (!ro_.emulate_roundings) return gelu(g);
    if (g <= -10.0) return 0.0;
    if (g >= 10.0) return g;
    return RoundToHalf(gelu(RoundToHalf(g)));
  }

  const TinyModelOptions& o_;
  const engine::GgufFile& file_;
  ReferenceOptions ro_;
};

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

constexpr int kBlockSize = 4;
constexpr int kNumBlocks = 40;

struct Loaded {
  TinyModel model;
  std::unique_ptr<CpuBackend> backend;
};

Loaded Load(const TinyModelOptions& o, int threads = 1, KvDtype kv_dtype = KvDtype::kF16) {
  absl::StatusOr<TinyModel> m = LoadTinyModel(o);
  CHECK(m.ok()) << m.status();
  Loaded l{std::move(*m), std::make_unique<CpuBackend>(threads)};
  const absl::Status s = l.backend->LoadModel(l.model.spec.config, l.model.spec.weights);
  CHECK(s.ok()) << s;
  const absl::Status kv = l.backend->AllocateKvCache({kNumBlocks, kBlockSize, kv_dtype});
  CHECK(kv.ok()) << kv;
  return l;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = d(rng);
  return t;
}

// `n` distinct block ids in a scrambled order.
std::vector<int32_t> ScrambledBlocks(int n, uint32_t seed) {
  std::vector<int32_t> ids(kNumBlocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  ids.resize(n);
  return ids;
}

int BlocksFor(int positions) { return (positions + kBlockSize - 1) / kBlockSize; }

// Feeds tokens[begin..end) of one sequence in chunks of `chunk`, positions
// starting at `begin`; returns the logits of the last token.
std::vector<float> Feed(Backend& b, const std::vector<int32_t>& tokens, int begin, int end,
                        const std::vector<int32_t>& table, int chunk, int vocab) {
  std::vector<float> logits(vocab);
  for (int at = begin; at < end; at += chunk) {
    const int n = std::min(chunk, end - at);
    StepBatch batch;
    batch.tokens = absl::MakeConstSpan(tokens).subspan(at, n);
    batch.sequences.push_back({0, n, at, table, at + n == end});
    const absl::Status s = b.Forward(batch, absl::MakeSpan(logits));
    CHECK(s.ok()) << s;
  }
  return logits;
}

std::vector<float> Prefill(Backend& b, const std::vector<int32_t>& tokens,
                           const std::vector<int32_t>& table, int vocab) {
  return Feed(b, tokens, 0, static_cast<int>(tokens.size()), table,
              static_cast<int>(tokens.size()), vocab);
}

// Bit-for-bit equality (EXPECT_EQ on floats would pass -0.0 == 0.0).
void ExpectBitIdentical(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": first difference at logit " << i << ": " << got[i]
                    << " vs " << want[i];
      return;
    }
  }
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

std::string ArchName(Architecture a) { return a == Architecture::kGemma3 ? "Gemma3" : "Llama"; }

// ---------------------------------------------------------------------------
// Logits against the reference, for both architectures and every weight type.
// ---------------------------------------------------------------------------

struct ModelCase {
  Architecture arch;
  GgmlType type;
};

TinyModelOptions OptionsFor(const ModelCase& c) {
  return c.arch == Architecture::kGemma3 ? TinyGemma3Options(c.type) : TinyLlamaOptions(c.type);
}

class ReferenceForwardTest : public ::testing::TestWithParam<ModelCase> {};

// Prompt lengths: 1 (no attention mixing), shorter than and several times
// the sliding window (4) and the block size (4), one that ends mid-block.
constexpr int kPromptLengths[] = {1, 3, 6, 13, 22};

// Tolerance with the reference rounding where the backend does (see
// ReferenceOptions). What remains is float32 accumulation (sums of <= 256
// terms, ~1e-7 relative), ggml's SIMD exp and float RoPE angles (a few ulp),
// and, now and then, a rounding that lands on the other side of a tie
// because its float32 input differs in the last bit from the reference's:
// - F32 weights: only fp16 roundings (K, V, Q, p, Gemma's GELU table) can
//   flip, moving one element by 2^-11 relative; observed <= 2e-4 on logits
//   of rms ~1 (Llama ~3e-6). 2e-3 keeps a 10x margin and still fails on a
//   wrong RoPE base for the sliding layers (~4e-2), window (~0.4) or pair
//   layout (~1).
// - Quantized weights: a Q8 activation that flips moves one element by a
//   whole quantization step (max|x|/127 per block of 32 or 256, ~2-3% of
//   the rms), which the following layers spread over the logits; and Q4_1's
//   dot adds m * s with s = d * sum(q) stored as fp16 (2^-12 relative of a
//   term as large as the result). Observed <= 5e-2 x rms; 0.1 x rms still
//   fails on a wrong window or pair layout (>= 0.4).
double ToleranceFor(GgmlType type) { return type == GgmlType::kF32 ? 2e-3 : 0.1; }

TEST_P(ReferenceForwardTest, LogitsMatchAFloat64ForwardThatRoundsWhereTheBackendRounds) {
  const TinyModelOptions o = OptionsFor(GetParam());
  const double tolerance = ToleranceFor(o.weight_type);
  Loaded l = Load(o);
  ReferenceModel ref(o, *l.model.file, {/*emulate_roundings=*/true});
  double worst = 0.0;
  for (int n : kPromptLengths) {
    const std::vector<int32_t> tokens = RandomTokens(n, o.vocab_size, 100 + n);
    const std::vector<float> got = Prefill(*l.backend, tokens, ScrambledBlocks(BlocksFor(n), n),
                                           o.vocab_size);
    const std::vector<double> want = ref.LastLogits(tokens);
    double rms = 0.0;
    for (double w : want) rms += w * w;
    rms = std::sqrt(rms / want.size());
    ASSERT_GT(rms, 0.1) << "degenerate logits";
    for (int i = 0; i < o.vocab_size; ++i) {
      worst = std::max(worst, std::abs(got[i] - want[i]));
      ASSERT_NEAR(got[i], want[i], tolerance * std::max(1.0, rms))
          << "prompt length " << n << ", logit " << i;
    }
  }
  RecordProperty("max_abs_diff", absl::StrCat(worst));
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitecturesAndWeightTypes, ReferenceForwardTest,
    ::testing::Values(ModelCase{Architecture::kLlama, GgmlType::kF32},
                      ModelCase{Architecture::kLlama, GgmlType::kQ8_0},
                      ModelCase{Architecture::kLlama, GgmlType::kQ4_1},
                      ModelCase{Architecture::kLlama, GgmlType::kQ4_K},
                      ModelCase{Architecture::kLlama, GgmlType::kQ6_K},
                      ModelCase{Architecture::kGemma3, GgmlType::kF32},
                      ModelCase{Architecture::kGemma3, GgmlType::kQ8_0},
                      ModelCase{Architecture::kGemma3, GgmlType::kQ4_1},
                      ModelCase{Architecture::kGemma3, GgmlType::kQ4_K},
                      ModelCase{Architecture::kGemma3, GgmlType::kQ6_K}),
    [](const ::testing::TestParamInfo<ModelCase>& info) {
      return ArchName(info.param.arch) + TypeName(info.param.type);
    });

// The same with F32 weights against a reference that rounds nothing: the
// backend's only departures from exact arithmetic are then its fp16 K/V
// cache, fp16 Q and probabilities (and Gemma's fp16 GELU table). Each rounds
// to 2^-12 relative; an attention output is a convex mix of V rows, so it
// moves by <~ 3 * 2^-12 of |v| (K, Q and p errors shift the weights, V's the
// values), ~1e-3 on unit values; the GELU table adds 2 * 2^-12 relative
// per element. These errors are independent and partly cancel through
// layers of gain ~1: observed <= 8e-4 on logits of rms ~1. 5e-3 leaves a
// 6x margin and is still below a wrong sliding-layer RoPE base (~4e-2).
constexpr double kExactTolerance = 5e-3;

TEST(CpuBackendTest, F32LogitsMatchAnUnroundedFloat64ForwardForBothArchitectures) {
  for (Architecture arch : {Architecture::kLlama, Architecture::kGemma3}) {
    const TinyModelOptions o = OptionsFor({arch, GgmlType::kF32});
    Loaded l = Load(o);
    ReferenceModel ref(o, *l.model.file, {/*emulate_roundings=*/false});
    for (int n : kPromptLengths) {
      const std::vector<int32_t> tokens = RandomTokens(n, o.vocab_size, 200 + n);
      const std::vector<float> got = Prefill(*l.backend, tokens, ScrambledBlocks(BlocksFor(n), n),
                                             o.vocab_size);
      const std::vector<double> want = ref.LastLogits(tokens);
      for (int i = 0; i < o.vocab_size; ++i) {
        ASSERT_NEAR(got[i], want[i], kExactTolerance)
            << ArchName(arch) << ", prompt length " << n << ", logit " << i;
      }
    }
  }
}

// The same with a bf16 KV cache. K, V, Q and the probabilities are then
// rounded to bf16, whose unit roundoff (2^-8, 8-bit significand) is 8 times
// fp16's (2^-11); the attention errors above scale with it, so does the
// bound: observed <= 7.2e-3 here (Llama), 8 * kExactTolerance leaves a 5x margin.
constexpr double kBf16KvTolerance = 8 * kExactTolerance;

TEST(CpuBackendTest, Bf16KvLogitsMatchAnUnroundedFloat64ForwardWithinBf16Tolerance) {
  for (Architecture arch : {Architecture::kLlama, Architecture::kGemma3}) {
    const TinyModelOptions o = OptionsFor({arch, GgmlType::kF32});
    Loaded l = Load(o, 1, KvDtype::kBF16);
    ReferenceModel ref(o, *l.model.file, {/*emulate_roundings=*/false});
    double worst = 0.0;
    for (int n : kPromptLengths) {
      const std::vector<int32_t> tokens = RandomTokens(n, o.vocab_size, 200 + n);
      const std::vector<float> got = Prefill(*l.backend, tokens, ScrambledBlocks(BlocksFor(n), n),
                                             o.vocab_size);
      const std::vector<double> want = ref.LastLogits(tokens);
      for (int i = 0; i < o.vocab_size; ++i) {
        worst = std::max(worst, std::abs(got[i] - want[i]));
        ASSERT_NEAR(got[i], want[i], kBf16KvTolerance)
            << ArchName(arch) << ", prompt length " << n << ", logit " << i;
      }
    }
    RecordProperty(ArchName(arch) + "_max_abs_diff", absl::StrCat(worst));
  }
}

TEST(CpuBackendTest, Bf16KvDecodeBatchedWithOtherSequencesGetsTheLogitsItGetsAlone) {
  const TinyModelOptions o = OptionsFor({Architecture::kGemma3, GgmlType::kQ4_K});
  const std::vector<int32_t> a = RandomTokens(21, o.vocab_size, 30);
  const std::vector<int32_t> b = RandomTokens(9, o.vocab_size, 31);
  const std::vector<int32_t> ids = ScrambledBlocks(kNumBlocks, 4);
  const std::vector<int32_t> ta(ids.begin(), ids.begin() + BlocksFor(21));
  const std::vector<int32_t> tb(ids.begin() + BlocksFor(21), ids.begin() + BlocksFor(21) + BlocksFor(9));
  std::vector<float> alone;
  {
    Loaded l = Load(o, 1, KvDtype::kBF16);
    Prefill(*l.backend, {a.begin(), a.end() - 1}, ta, o.vocab_size);
    alone = Feed(*l.backend, a, 20, 21, ta, 1, o.vocab_size);
  }
  Loaded l = Load(o, 2, KvDtype::kBF16);
  Prefill(*l.backend, {a.begin(), a.end() - 1}, ta, o.vocab_size);
  // a's decode step next to b's whole prefill.
  std::vector<int32_t> tokens = {a.back()};
  tokens.insert(tokens.end(), b.begin(), b.end());
  StepBatch batch;
  batch.tokens = tokens;
  batch.sequences.push_back({0, 1, 20, ta, true});
  batch.sequences.push_back({1, 9, 0, tb, true});
  std::vector<float> logits(2 * o.vocab_size);
  ASSERT_TRUE(l.backend->Forward(batch, absl::MakeSpan(logits)).ok());
  ExpectBitIdentical({logits.begin(), logits.begin() + o.vocab_size}, alone, "bf16 decode");
}

TEST(CpuBackendTest, TiedOutputUsesTheTokenEmbeddingAsTheOutputMatrix) {
  TinyModelOptions o = TinyLlamaOptions(GgmlType::kQ8_0);
  o.tied_output = true;
  Loaded l = Load(o);
  ReferenceModel ref(o, *l.model.file, {});
  const std::vector<int32_t> tokens = RandomTokens(7, o.vocab_size, 5);
  const std::vector<float> got = Prefill(*l.backend, tokens, ScrambledBlocks(2, 1), o.vocab_size);
  const std::vector<double> want = ref.LastLogits(tokens);
  for (int i = 0; i < o.vocab_size; ++i) ASSERT_NEAR(got[i], want[i], ToleranceFor(o.weight_type) * 8) << i;
}

// ---------------------------------------------------------------------------
// Invariance: batching, chunking, block placement, threads.
// ---------------------------------------------------------------------------

// Q4_K models: head_dim 64, so the attention sums span several SIMD lanes
// and accumulators, where a change of summation order shows.
class InvarianceTest : public ::testing::TestWithParam<Architecture> {
 protected:
  TinyModelOptions Options() const { return OptionsFor({GetParam(), GgmlType::kQ4_K}); }
};

TEST_P(InvarianceTest, SequencesBatchedTogetherGetTheLogitsTheyGetAlone) {
  const TinyModelOptions o = Options();
  const std::vector<int> lengths = {5, 11, 2};
  std::vector<std::vector<int32_t>> prompts, tables;
  for (int i = 0; i < 3; ++i) prompts.push_back(RandomTokens(lengths[i], o.vocab_size, 10 + i));
  // Disjoint, scrambled blocks for the three sequences.
  const std::vector<int32_t> ids = ScrambledBlocks(kNumBlocks, 3);
  int next = 0;
  for (int i = 0; i < 3; ++i) {
    tables.emplace_back(ids.begin() + next, ids.begin() + next + BlocksFor(lengths[i]));
    next += BlocksFor(lengths[i]);
  }
  std::vector<std::vector<float>> alone;
  {
    Loaded l = Load(o);
    for (int i = 0; i < 3; ++i) alone.push_back(Prefill(*l.backend, prompts[i], tables[i], o.vocab_size));
  }
  Loaded l = Load(o);
  std::vector<int32_t> tokens;
  StepBatch batch;
  for (int i = 0; i < 3; ++i) {
    batch.sequences.push_back({static_cast<int>(tokens.size()), lengths[i], 0, tables[i], true});
    tokens.insert(tokens.end(), prompts[i].begin(), prompts[i].end());
  }
  batch.tokens = tokens;
  std::vector<float> logits(3 * o.vocab_size);
  ASSERT_TRUE(l.backend->Forward(batch, absl::MakeSpan(logits)).ok());
  for (int i = 0; i < 3; ++i) {
    ExpectBitIdentical({logits.begin() + i * o.vocab_size, logits.begin() + (i + 1) * o.vocab_size},
                       alone[i], absl::StrCat("sequence ", i));
  }
}

// The engine's common step: several sequences decoding one token each next
// to another's prefill. A decoding sequence must get the logits it would
// get decoding alone, or its tokens depend on who else is scheduled.
// (CpuBackend::Attention picks the q.k / p.v summation order from the
// step's total token count, F16DotOrderFor(batch.tokens.size()): a lone
// decode sums in ggml_vec_dot_f16 order, the same decode in a batch in
// tinyBLAS order. Choosing it per sequence, from seq.num_tokens, keeps
// llama.cpp parity for single-sequence steps and makes this hold.)
TEST_P(InvarianceTest, ADecodeStepBatchedWithOtherSequencesGetsTheLogitsItGetsAlone) {
  const TinyModelOptions o = Options();
  // Contexts past 16 positions, so that every lane and accumulator of the
  // attention sums is used.
  const int na = 100, nb = 6, nc = 41;
  const std::vector<int32_t> a = RandomTokens(na, o.vocab_size, 21);
  const std::vector<int32_t> b = RandomTokens(nb, o.vocab_size, 22);
  const std::vector<int32_t> c = RandomTokens(nc, o.vocab_size, 23);
  const std::vector<int32_t> ids = ScrambledBlocks(kNumBlocks, 4);
  auto take = [&ids, next = 0](int n) mutable {
    std::vector<int32_t> t(ids.begin() + next, ids.begin() + next + BlocksFor(n));
    next += BlocksFor(n);
    return t;
  };
  const std::vector<int32_t> ta = take(na), tb = take(nb), tc = take(nc);
  std::vector<float> a_alone, c_alone;
  {
    Loaded l = Load(o);
    Feed(*l.backend, a, 0, na - 1, ta, na - 1, o.vocab_size);
    Feed(*l.backend, c, 0, nc - 1, tc, nc - 1, o.vocab_size);
    a_alone = Feed(*l.backend, a, na - 1, na, ta, 1, o.vocab_size);
    c_alone = Feed(*l.backend, c, nc - 1, nc, tc, 1, o.vocab_size);
  }
  Loaded l = Load(o);
  Feed(*l.backend, a, 0, na - 1, ta, na - 1, o.vocab_size);
  Feed(*l.backend, c, 0, nc - 1, tc, nc - 1, o.vocab_size);
  // One step: a decodes its last token, b prefills, c decodes its last.
  std::vector<int32_t> tokens = {a[na - 1]};
  tokens.insert(tokens.end(), b.begin(), b.end());
  tokens.push_back(c[nc - 1]);
  StepBatch batch;
  batch.tokens = tokens;
  batch.sequences.push_back({0, 1, na - 1, ta, true});
  batch.sequences.push_back({1, nb, 0, tb, false});
  batch.sequences.push_back({1 + nb, 1, nc - 1, tc, true});
  std::vector<float> logits(2 * o.vocab_size);
  ASSERT_TRUE(l.backend->Forward(batch, absl::MakeSpan(logits)).ok());
  ExpectBitIdentical({logits.begin(), logits.begin() + o.vocab_size}, a_alone, "sequence a");
  ExpectBitIdentical({logits.begin() + o.vocab_size, logits.end()}, c_alone, "sequence c");
}

TEST_P(InvarianceTest, PrefillInChunksOfSeveralTokensGivesTheLogitsOfOneChunk) {
  const TinyModelOptions o = Options();
  // 23 = 7 * 3 + 2 = 3 * 7 + 2: every chunk has 2+ tokens.
  const std::vector<int32_t> tokens = RandomTokens(23, o.vocab_size, 31);
  const std::vector<int32_t> table = ScrambledBlocks(BlocksFor(24), 5);
  std::vector<float> whole;
  {
    Loaded l = Load(o);
    whole = Feed(*l.backend, tokens, 0, 23, table, 23, o.vocab_size);
  }
  for (int chunk : {3, 7}) {
    Loaded l = Load(o);
    ExpectBitIdentical(Feed(*l.backend, tokens, 0, 23, table, chunk, o.vocab_size), whole,
                       absl::StrCat("chunks of ", chunk));
  }
}

// A step of one token sums q.k and p.v in ggml_vec_dot_f16's order instead
// of tinyBLAS's (as llama.cpp does, for parity: see simd_order.h), so
// token-by-token prefill and decode agree with a many-token prefill only up
// to float32 summation order, not bit for bit.
TEST_P(InvarianceTest, PrefillOneTokenAtATimeDiffersOnlyInAttentionSummationOrder) {
  const TinyModelOptions o = Options();
  const std::vector<int32_t> tokens = RandomTokens(23, o.vocab_size, 31);
  const std::vector<int32_t> table = ScrambledBlocks(BlocksFor(24), 5);
  std::vector<float> whole, single;
  {
    Loaded l = Load(o);
    whole = Feed(*l.backend, tokens, 0, 23, table, 23, o.vocab_size);
  }
  {
    Loaded l = Load(o);
    single = Feed(*l.backend, tokens, 0, 23, table, 1, o.vocab_size);
  }
  EXPECT_LT(MaxAbsDiff(single, whole), 1e-3);
  EXPECT_EQ(std::max_element(single.begin(), single.end()) - single.begin(),
            std::max_element(whole.begin(), whole.end()) - whole.begin());
}

TEST_P(InvarianceTest, DecodeAfterChunkedPrefillEqualsDecodeAfterOneChunkPrefill) {
  const TinyModelOptions o = Options();
  const std::vector<int32_t> tokens = RandomTokens(20, o.vocab_size, 41);
  const std::vector<int32_t> table = ScrambledBlocks(BlocksFor(20), 6);
  std::vector<float> reference_decode, whole_prefill;
  {
    Loaded l = Load(o);
    Feed(*l.backend, tokens, 0, 17, table, 17, o.vocab_size);
    reference_decode = Feed(*l.backend, tokens, 17, 20, table, 1, o.vocab_size);
  }
  {
    Loaded l = Load(o);
    whole_prefill = Prefill(*l.backend, tokens, table, o.vocab_size);
  }
  for (int chunk : {3, 7}) {  // 17 = 5 * 3 + 2 = 2 * 7 + 3
    Loaded l = Load(o);
    Feed(*l.backend, tokens, 0, 17, table, chunk, o.vocab_size);
    ExpectBitIdentical(Feed(*l.backend, tokens, 17, 20, table, 1, o.vocab_size),
                       reference_decode, absl::StrCat("after chunks of ", chunk));
  }
  // Decoding the last three tokens one by one vs prefilling all 20: only the
  // attention summation order of the one-token steps differs.
  EXPECT_LT(MaxAbsDiff(reference_decode, whole_prefill), 1e-3);
}

TEST_P(InvarianceTest, ACopiedBlockGivesTheSequenceReadingItIdenticalLogits) {
  const TinyModelOptions o = Options();
  const std::vector<int32_t> tokens = RandomTokens(8, o.vocab_size, 51);
  Loaded l = Load(o);
  // Prompt of 6: block 7 full (positions 0-3), block 12 half full (4-5).
  const std::vector<int32_t> parent = {7, 12};
  Prefill(*l.backend, {tokens.begin(), tokens.begin() + 6}, parent, o.vocab_size);
  const std::pair<int, int> copy[] = {{12, 30}};
  l.backend->CopyBlocks(copy);
  const std::vector<int32_t> child = {7, 30};
  // Both extend with the same two tokens, each writing its own last block.
  const std::vector<float> from_copy = Feed(*l.backend, tokens, 6, 8, child, 2, o.vocab_size);
  const std::vector<float> from_original = Feed(*l.backend, tokens, 6, 8, parent, 2, o.vocab_size);
  ExpectBitIdentical(from_copy, from_original, "copy vs original");
}

TEST_P(InvarianceTest, LogitsDoNotDependOnTheNumberOfThreads) {
  const TinyModelOptions o = Options();
  const std::vector<int32_t> tokens = RandomTokens(13, o.vocab_size, 61);
  const std::vector<int32_t> table = ScrambledBlocks(BlocksFor(14), 7);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    Loaded l = Load(o, threads);
    std::vector<float> r = Prefill(*l.backend, tokens, table, o.vocab_size);
    const std::vector<float> d = Feed(*l.backend, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5},
                                      13, 14, table, 1, o.vocab_size);
    r.insert(r.end(), d.begin(), d.end());
    results.push_back(r);
  }
  ExpectBitIdentical(results[1], results[0], "2 threads vs 1");
  ExpectBitIdentical(results[2], results[0], "3 threads vs 1");
}

INSTANTIATE_TEST_SUITE_P(BothArchitectures, InvarianceTest,
                         ::testing::Values(Architecture::kLlama, Architecture::kGemma3),
                         [](const ::testing::TestParamInfo<Architecture>& info) {
                           return ArchName(info.param);
                         });

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

// Every invalid batch is rejected with INVALID_ARGUMENT before anything is
// written: the logits buffer keeps its contents and the KV cache its, so a
// later valid decode equals one on a backend that never saw the bad batch.
TEST(CpuBackendTest, InvalidBatchesAreRejectedAndChangeNothing) {
  const TinyModelOptions o = TinyLlamaOptions();
  const std::vector<int32_t> prompt = RandomTokens(6, o.vocab_size, 71);
  const std::vector<int32_t> table = {3, 9};
  std::vector<float> clean;
  {
    Loaded l = Load(o);
    Prefill(*l.backend, prompt, table, o.vocab_size);
    clean = Feed(*l.backend, {0, 0, 0, 0, 0, 0, 17}, 6, 7, table, 1, o.vocab_size);
  }
  Loaded l = Load(o);
  Prefill(*l.backend, prompt, table, o.vocab_size);

  const std::vector<int32_t> good = {1, 2, 3};
  const std::vector<int32_t> out_of_vocab = {1, o.vocab_size, 3};
  const std::vector<int32_t> negative = {1, -1, 3};
  // The bad batches write positions 6..8: blocks 3 and 9 hold the prompt.
  const std::vector<int32_t> table3 = {3, 9, 14};
  const std::vector<int32_t> short_table = {3, 9};
  const std::vector<int32_t> outside_pool = {3, 9, kNumBlocks};
  const std::vector<int32_t> negative_block = {3, 9, -2};
  struct Case {
    std::string what;
    StepBatch batch;
    size_t logits_size;
    std::string message;
  };
  auto seq = [](int begin, int n, int start, absl::Span<const int32_t> t, bool want) {
    return SequenceStep{begin, n, start, t, want};
  };
  std::vector<Case> cases = {
      {"token out of vocab", {out_of_vocab, {seq(0, 3, 6, table3, true)}}, 97, "token id 97"},
      {"negative token", {negative, {seq(0, 3, 6, table3, true)}}, 97, "token id -1"},
      {"block table too short", {good, {seq(0, 3, 6, short_table, true)}}, 97, "block table"},
      {"block id outside pool", {good, {seq(0, 3, 6, outside_pool, true)}}, 97, "block id 40"},
      {"negative block id", {good, {seq(0, 3, 6, negative_block, true)}}, 97, "block id -2"},
      {"tokens of no sequence", {good, {seq(0, 2, 6, table3, true)}}, 97, "no sequence"},
      {"sequences overlap", {good, {seq(0, 2, 6, table3, false), seq(1, 2, 6, table3, true)}}, 97,
       "tile"},
      {"sequence past the tokens", {good, {seq(0, 4, 6, table3, true)}}, 97, "outside"},
      {"empty sequence", {good, {seq(0, 0, 6, table3, false), seq(0, 3, 6, table3, true)}}, 97,
       "outside"},
      {"negative start", {good, {seq(0, 3, -1, table3, true)}}, 97, "outside"},
      {"logits buffer too small", {good, {seq(0, 3, 6, table3, true)}}, 96, "logits buffer"},
  };
  for (Case& c : cases) {
    std::vector<float> logits(c.logits_size, 42.0f);
    const absl::Status s = l.backend->Forward(c.batch, absl::MakeSpan(logits));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.what;
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float v) { return v == 42.0f; }))
        << c.what << " wrote logits";
  }
  ExpectBitIdentical(Feed(*l.backend, {0, 0, 0, 0, 0, 0, 17}, 6, 7, table, 1, o.vocab_size), clean,
                     "decode after the rejected batches");
}

TEST(CpuBackendTest, ForwardBeforeTheModelOrTheKvCacheIsAFailedPrecondition) {
  const std::vector<int32_t> tokens = {1};
  const std::vector<int32_t> table = {0};
  StepBatch batch{tokens, {{0, 1, 0, table, true}}};
  std::vector<float> logits(97);
  CpuBackend empty(1);
  EXPECT_EQ(empty.Forward(batch, absl::MakeSpan(logits)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(empty.AllocateKvCache({4, 4}).code(), absl::StatusCode::kFailedPrecondition);

  absl::StatusOr<TinyModel> m = LoadTinyModel(TinyLlamaOptions());
  ASSERT_TRUE(m.ok()) << m.status();
  CpuBackend b(1);
  ASSERT_TRUE(b.LoadModel(m->spec.config, m->spec.weights).ok());
  const absl::Status s = b.Forward(batch, absl::MakeSpan(logits));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("AllocateKvCache"));
  EXPECT_EQ(b.AllocateKvCache({0, 4}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.AllocateKvCache({4, 0}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(b.AllocateKvCache({4, 4}).ok());
  EXPECT_TRUE(b.Forward(batch, absl::MakeSpan(logits)).ok());
}

TEST(CpuBackendTest, KvBytesPerBlockCountsKAndVOfEveryLayerInFp16) {
  Loaded l = Load(TinyGemma3Options());
  // 2 (K, V) x 6 layers x 4 slots x 1 KV head x 32 dims x 2 bytes.
  EXPECT_EQ(l.backend->KvBytesPerBlock(), 2 * 6 * kBlockSize * 1 * 32 * 2);
  EXPECT_EQ(l.backend->kv_cache_config().num_blocks, kNumBlocks);
  EXPECT_EQ(l.backend->kv_cache_config().block_size, kBlockSize);
  EXPECT_EQ(l.backend->kv_cache_config().dtype, KvDtype::kF16);
}

TEST(CpuBackendTest, KvBytesPerBlockCountsTwoBytesPerBf16Element) {
  Loaded l = Load(TinyGemma3Options(), 1, KvDtype::kBF16);
  EXPECT_EQ(l.backend->kv_cache_config().dtype, KvDtype::kBF16);
  EXPECT_EQ(l.backend->KvBytesPerBlock(), 2 * 6 * kBlockSize * 1 * 32 * 2);
}

class LoadModelErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TinyModel> m = LoadTinyModel(TinyGemma3Options(GgmlType::kQ8_0));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }
  // LoadModel's status after `mutate` edits a copy of the spec.
  template <typename F>
  absl::Status LoadWith(F mutate) {
    ModelConfig c = model_.spec.config;
    ModelWeights w = model_.spec.weights;
    mutate(c, w);
    CpuBackend b(1);
    return b.LoadModel(c, w);
  }
  TinyModel model_;
};

TEST_F(LoadModelErrorTest, TheUnmodifiedModelLoads) {
  EXPECT_TRUE(LoadWith([](ModelConfig&, ModelWeights&) {}).ok());
}

TEST_F(LoadModelErrorTest, RejectsAMatrixOfTheWrongShapeNamingIt) {
  const absl::Status s = LoadWith([](ModelConfig&, ModelWeights& w) {
    std::swap(w.layers[1].attn_q.dims[0], w.layers[1].attn_q.dims[1]);
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("blk.1.attn_q.weight"));
}

TEST_F(LoadModelErrorTest, RejectsAnOutputMatrixWithTheWrongVocabulary) {
  const absl::Status s = LoadWith([](ModelConfig& c, ModelWeights&) { c.vocab_size = 98; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("token_embd.weight"));
}

TEST_F(LoadModelErrorTest, RejectsATensorTypeItCannotMultiply) {
  const absl::Status s = LoadWith([](ModelConfig&, ModelWeights& w) {
    w.layers[0].ffn_down.type = GgmlType::kQ2_K;
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("blk.0.ffn_down.weight"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("Q2_K"));
}

TEST_F(LoadModelErrorTest, RejectsANormThatIsNotF32) {
  const absl::Status s = LoadWith([](ModelConfig&, ModelWeights& w) {
    w.layers[2].post_ffw_norm.type = GgmlType::kF16;
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("blk.2.post_ffw_norm.weight"));
}

TEST_F(LoadModelErrorTest, RejectsAGemmaLayerWithoutItsQkNorm) {
  const absl::Status s = LoadWith([](ModelConfig&, ModelWeights& w) {
    w.layers[3].attn_k_norm.data = nullptr;
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("blk.3.attn_k_norm.weight"));
}

TEST_F(LoadModelErrorTest, RejectsInconsistentHyperparameters) {
  EXPECT_EQ(LoadWith([](ModelConfig& c, ModelWeights&) { c.n_kv_heads = 3; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadWith([](ModelConfig& c, ModelWeights&) { c.rope_dims = 33; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadWith([](ModelConfig& c, ModelWeights&) { c.n_layers = 5; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadWith([](ModelConfig& c, ModelWeights&) { c.layer_is_sliding.pop_back(); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadWith([](ModelConfig& c, ModelWeights&) { c.hidden = 0; }).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace conclave::kernels::cpu
