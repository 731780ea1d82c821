// LoadModelSpec on tiny GGUF images: the config each architecture implies,
// and errors that name the key or tensor at fault.
#include "engine/model/model_loader.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_model.h"

namespace conclave::engine {
namespace {

using ::conclave::testing::GgufWriter;
using ::conclave::testing::LoadTinyModel;
using ::conclave::testing::TinyGemma3Options;
using ::conclave::testing::TinyLlamaOptions;
using ::conclave::testing::TinyModel;
using ::conclave::testing::TinyModelOptions;
using ::conclave::testing::TinyModelWriter;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using kernels::Architecture;
using kernels::GgmlType;

absl::Status LoadStatus(const std::string& image) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(image);
  if (!f.ok()) return f.status();
  return LoadModelSpec(**f).status();
}

absl::Status LoadStatus(const TinyModelOptions& o) { return LoadStatus(TinyModelWriter(o).Build()); }

TEST(ModelLoaderTest, ReadsTheLlamaConfig) {
  const absl::StatusOr<TinyModel> m = LoadTinyModel(TinyLlamaOptions(GgmlType::kQ8_0));
  ASSERT_TRUE(m.ok()) << m.status();
  const kernels::ModelConfig& c = m->spec.config;
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.ffn_hidden, 96);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rope_dims, 16);
  EXPECT_EQ(c.vocab_size, 97);
  EXPECT_EQ(c.context_length, 256);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.rope_neox);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_THAT(c.layer_is_sliding, ElementsAre(false, false));
  EXPECT_EQ(c.embedding_scale, 1.0f);
  EXPECT_EQ(c.query_scale, 0.0f);

  const kernels::ModelWeights& w = m->spec.weights;
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.token_embd.name, "token_embd.weight");
  EXPECT_EQ(w.token_embd.type, GgmlType::kQ8_0);
  EXPECT_THAT(w.token_embd.dims, ElementsAre(64, 97));
  EXPECT_EQ(w.output.name, "output.weight");
  EXPECT_NE(w.output.data, w.token_embd.data);
  EXPECT_EQ(w.layers[1].attn_k.name, "blk.1.attn_k.weight");
  EXPECT_THAT(w.layers[1].attn_k.dims, ElementsAre(64, 32));
  EXPECT_THAT(w.layers[0].ffn_down.dims, ElementsAre(96, 64));
  // Gemma-only tensors stay absent views.
  EXPECT_FALSE(w.layers[0].attn_q_norm.present());
  EXPECT_FALSE(w.layers[0].post_ffw_norm.present());
}

TEST(ModelLoaderTest, ReadsTheGemma3ConfigWithFiveSlidingLayersPerGlobalOne) {
  TinyModelOptions o = TinyGemma3Options();
  o.n_layers = 8;
  const absl::StatusOr<TinyModel> m = LoadTinyModel(o);
  ASSERT_TRUE(m.ok()) << m.status();
  const kernels::ModelConfig& c = m->spec.config;
  EXPECT_EQ(c.arch, Architecture::kGemma3);
  EXPECT_EQ(c.n_layers, 8);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 32);  // key_length, not hidden / n_heads = 16
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_EQ(c.sliding_window, 4);
  EXPECT_THAT(c.layer_is_sliding, ElementsAre(true, true, true, true, true, false, true, true));
  EXPECT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.rope_theta_local, 10000.0f);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_FLOAT_EQ(c.embedding_scale, 8.0f);        // sqrt(64)
  EXPECT_FLOAT_EQ(c.query_scale, 1.0f / std::sqrt(32.0f));  // 1/sqrt(head_dim)
  const kernels::LayerWeights& l = m->spec.weights.layers[5];
  EXPECT_EQ(l.attn_q_norm.name, "blk.5.attn_q_norm.weight");
  EXPECT_THAT(l.attn_q_norm.dims, ElementsAre(32));
  EXPECT_TRUE(l.attn_k_norm.present());
  EXPECT_TRUE(l.post_attention_norm.present());
  EXPECT_THAT(l.post_ffw_norm.dims, ElementsAre(64));
  EXPECT_THAT(l.attn_q.dims, ElementsAre(64, 128));
  EXPECT_THAT(l.attn_output.dims, ElementsAre(128, 64));
}

TEST(ModelLoaderTest, Gemma3SlidingWindowDefaultsTo512) {
  TinyModelOptions o = TinyGemma3Options();
  o.omit = {"gemma3.attention.sliding_window"};
  const absl::StatusOr<TinyModel> m = LoadTinyModel(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.config.sliding_window, 512);
}

TEST(ModelLoaderTest, OptionalKeysTakeTheirDefaults) {
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"llama.attention.head_count_kv", "llama.attention.key_length",
            "llama.attention.value_length", "llama.rope.dimension_count",
            "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
            "llama.vocab_size"};
  o.n_kv_heads = 4;  // the default: head_count
  const absl::StatusOr<TinyModel> m = LoadTinyModel(o);
  ASSERT_TRUE(m.ok()) << m.status();
  const kernels::ModelConfig& c = m->spec.config;
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);  // hidden / n_heads
  EXPECT_EQ(c.rope_dims, 16);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.vocab_size, 97);  // from token_embd's rows
}

TEST(ModelLoaderTest, WithoutOutputWeightTheOutputIsTheTokenEmbedding) {
  TinyModelOptions o = TinyLlamaOptions();
  o.tied_output = true;
  const absl::StatusOr<TinyModel> m = LoadTinyModel(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.weights.output.data, m->spec.weights.token_embd.data);
  EXPECT_EQ(m->spec.weights.output.name, "token_embd.weight");
}

TEST(ModelLoaderTest, WeightViewsPointIntoTheFilesMapping) {
  const absl::StatusOr<TinyModel> m = LoadTinyModel(TinyLlamaOptions());
  ASSERT_TRUE(m.ok()) << m.status();
  const GgufTensorInfo* info = m->file->FindTensor("blk.1.ffn_up.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(m->spec.weights.layers[1].ffn_up.data, m->file->TensorData(*info));
}

TEST(ModelLoaderTest, MissingRequiredKeysAreNamed) {
  for (const std::string key : {"llama.block_count", "llama.embedding_length",
                                "llama.feed_forward_length", "llama.attention.head_count",
                                "llama.context_length"}) {
    TinyModelOptions o = TinyLlamaOptions();
    o.omit = {key};
    const absl::Status s = LoadStatus(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(s.message()), HasSubstr(key));
  }
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"general.architecture"};
  const absl::Status s = LoadStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("general.architecture"));
}

TEST(ModelLoaderTest, MissingRequiredTensorsAreNamed) {
  const std::vector<std::string> llama = {"token_embd.weight", "output_norm.weight",
                                          "blk.0.attn_norm.weight", "blk.1.attn_q.weight",
                                          "blk.1.attn_output.weight", "blk.0.ffn_down.weight"};
  for (const std::string& name : llama) {
    TinyModelOptions o = TinyLlamaOptions();
    o.omit = {name};
    const absl::Status s = LoadStatus(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(s.message()), HasSubstr(name));
  }
  for (const std::string& name : {std::string("blk.2.attn_q_norm.weight"),
                                  std::string("blk.5.attn_k_norm.weight"),
                                  std::string("blk.0.post_attention_norm.weight"),
                                  std::string("blk.4.post_ffw_norm.weight")}) {
    TinyModelOptions o = TinyGemma3Options();
    o.omit = {name};
    const absl::Status s = LoadStatus(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(s.message()), HasSubstr(name));
  }
}

TEST(ModelLoaderTest, ZeroOrHugeDimensionsAreOutOfRange) {
  // The reader rejects duplicate keys: write the model without the key,
  // then the bad value.
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"llama.block_count"};
  GgufWriter zero = TinyModelWriter(o);
  zero.AddUint32("llama.block_count", 0);
  absl::Status s = LoadStatus(zero.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("llama.block_count=0"));
  GgufWriter huge = TinyModelWriter(o);
  huge.AddUint64("llama.block_count", uint64_t{1} << 40);
  s = LoadStatus(huge.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("llama.block_count"));
  GgufWriter int_max_plus_one = TinyModelWriter(o);
  int_max_plus_one.AddUint32("llama.block_count", uint32_t{1} << 31);
  s = LoadStatus(int_max_plus_one.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("llama.block_count=2147483648 out of range"));
}

TEST(ModelLoaderTest, ABlockCountTheTensorsCannotHoldFailsBeforeAllocating) {
  // Found by gguf_reader_fuzz (fuzz/corpus/gguf_reader_fuzz/
  // regress_block_count_201326592): the layers were allocated for the
  // block count (~188 GB) before their tensors were looked up.
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"llama.block_count"};
  GgufWriter w = TinyModelWriter(o);
  w.AddUint32("llama.block_count", 201326592);
  absl::Status s = LoadStatus(w.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("llama.block_count=201326592 needs at least 9 tensors per layer; the "
                        "file has 21 tensors"));
}

TEST(ModelLoaderTest, UnsupportedArchitectureIsNamed) {
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"general.architecture"};
  GgufWriter w = TinyModelWriter(o);
  w.AddString("general.architecture", "mamba");
  const absl::Status s = LoadStatus(w.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'mamba'"));
}

TEST(ModelLoaderTest, VocabSizeKeyMustMatchTheEmbeddingRows) {
  TinyModelOptions o = TinyLlamaOptions();
  o.vocab_size_key = 100;
  const absl::Status s = LoadStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("llama.vocab_size=100"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("97"));
}

TEST(ModelLoaderTest, HeadCountMustBeAMultipleOfKvHeadCount) {
  TinyModelOptions o = TinyLlamaOptions();
  o.n_kv_heads = 3;
  const absl::Status s = LoadStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("head_count_kv=3"));
}

TEST(ModelLoaderTest, ValueLengthDifferentFromKeyLengthIsRejected) {
  TinyModelOptions o = TinyLlamaOptions();
  o.omit = {"llama.attention.value_length"};
  GgufWriter w = TinyModelWriter(o);
  w.AddUint32("llama.attention.value_length", 8);
  const absl::Status s = LoadStatus(w.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("value_length"));
}

}  // namespace
}  // namespace conclave::engine
