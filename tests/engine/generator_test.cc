// Generate (prefill in chunks, then greedy or sampled decode) on a tiny
// random-weight model and the CPU backend.
#include "engine/generator.h"

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/check.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/tiny_model.h"

namespace conclave::engine {
namespace {

using ::conclave::testing::LoadTinyModel;
using ::conclave::testing::TinyGemma3Options;
using ::conclave::testing::TinyLlamaOptions;
using ::conclave::testing::TinyModel;
using ::testing::ElementsAreArray;
using kernels::GgmlType;
using kernels::cpu::CpuBackend;

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TinyModel> m = LoadTinyModel(TinyLlamaOptions(GgmlType::kQ8_0));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    backend_ = std::make_unique<CpuBackend>(2);
    ASSERT_TRUE(backend_->LoadModel(model_.spec.config, model_.spec.weights).ok());
  }
  int vocab() const { return model_.spec.config.vocab_size; }
  absl::StatusOr<GenerateResult> Run(const GenerateOptions& options,
                                     const std::function<bool(int32_t)>& on_token = nullptr) {
    return Generate(*backend_, vocab(), prompt_, options, on_token);
  }

  TinyModel model_;
  std::unique_ptr<CpuBackend> backend_;
  std::vector<int32_t> prompt_ = {5, 17, 42, 3, 88, 61, 7, 29, 14};
};

TEST_F(GeneratorTest, GreedyGenerationIsDeterministic) {
  GenerateOptions o;
  o.max_tokens = 12;
  absl::StatusOr<GenerateResult> a = Run(o);
  absl::StatusOr<GenerateResult> b = Run(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->first_logits, b->first_logits);
  EXPECT_FALSE(a->stopped_at_eos);
}

TEST_F(GeneratorTest, GreedyTokensAreTheArgmaxOfTheLogitsTheyWereSampledFrom) {
  GenerateOptions o;
  o.max_tokens = 6;
  o.keep_all_logits = true;
  absl::StatusOr<GenerateResult> r = Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->tokens.size(), 6u);
  ASSERT_EQ(r->all_logits.size(), 6u * vocab());
  for (size_t i = 0; i < r->tokens.size(); ++i) {
    EXPECT_EQ(r->tokens[i],
              Argmax(absl::MakeConstSpan(r->all_logits).subspan(i * vocab(), vocab())))
        << i;
  }
  EXPECT_TRUE(std::equal(r->first_logits.begin(), r->first_logits.end(), r->all_logits.begin()));
}

TEST_F(GeneratorTest, GeneratesExactlyMaxTokensWithoutAnEndToken) {
  for (int max_tokens : {0, 1, 7}) {
    GenerateOptions o;
    o.max_tokens = max_tokens;
    absl::StatusOr<GenerateResult> r = Run(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens.size(), static_cast<size_t>(max_tokens));
    // Prefill happens even with max_tokens = 0.
    EXPECT_EQ(r->first_logits.size(), static_cast<size_t>(vocab()));
  }
}

TEST_F(GeneratorTest, StopsAfterReportingAnEndOfGenerationToken) {
  GenerateOptions o;
  o.max_tokens = 10;
  absl::StatusOr<GenerateResult> free_run = Run(o);
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  const int32_t end = free_run->tokens[3];
  // The first occurrence of `end` in the free run.
  const size_t first = std::find(free_run->tokens.begin(), free_run->tokens.end(), end) -
                       free_run->tokens.begin();
  o.is_end_of_generation = [end](int32_t t) { return t == end; };
  std::vector<int32_t> reported;
  absl::StatusOr<GenerateResult> r = Run(o, [&](int32_t t) {
    reported.push_back(t);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->stopped_at_eos);
  EXPECT_THAT(r->tokens, ElementsAreArray(free_run->tokens.begin(),
                                          free_run->tokens.begin() + first + 1));
  EXPECT_EQ(reported, r->tokens);

  o.ignore_eos = true;
  absl::StatusOr<GenerateResult> ignored = Run(o);
  ASSERT_TRUE(ignored.ok()) << ignored.status();
  EXPECT_FALSE(ignored->stopped_at_eos);
  EXPECT_EQ(ignored->tokens, free_run->tokens);
}

TEST_F(GeneratorTest, OnTokenReturningFalseStopsGeneration) {
  GenerateOptions o;
  o.max_tokens = 10;
  int calls = 0;
  absl::StatusOr<GenerateResult> r = Run(o, [&](int32_t) { return ++calls < 3; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r->tokens.size(), 3u);
  EXPECT_FALSE(r->stopped_at_eos);
}

TEST_F(GeneratorTest, RejectsAnEmptyPromptAndBadOptions) {
  GenerateOptions o;
  EXPECT_EQ(Generate(*backend_, vocab(), {}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.max_tokens = -1;
  EXPECT_EQ(Run(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.max_tokens = 4;
  o.sampling.temperature = -1.0f;
  EXPECT_EQ(Run(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GeneratorTest, PropagatesTheBackendsErrors) {
  prompt_ = {5, 1000};  // outside the vocabulary of 97
  absl::StatusOr<GenerateResult> r = Run(GenerateOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GeneratorTest, FirstLogitsAreTheBackendsPrefillLogits) {
  GenerateOptions o;
  o.max_tokens = 1;
  absl::StatusOr<GenerateResult> r = Run(o);
  ASSERT_TRUE(r.ok()) << r.status();

  CpuBackend b(1);
  ASSERT_TRUE(b.LoadModel(model_.spec.config, model_.spec.weights).ok());
  ASSERT_TRUE(b.AllocateKvCache({4, 16}).ok());
  const std::vector<int32_t> table = {2};
  kernels::StepBatch batch;
  batch.tokens = prompt_;
  batch.sequences.push_back({0, static_cast<int>(prompt_.size()), 0, table, true});
  std::vector<float> logits(vocab());
  ASSERT_TRUE(b.Forward(batch, absl::MakeSpan(logits)).ok());
  EXPECT_EQ(r->first_logits, logits);
}

TEST_F(GeneratorTest, PrefillChunkSizeDoesNotChangeTheResultWhenChunksHaveSeveralTokens) {
  GenerateOptions o;
  o.max_tokens = 8;
  o.block_size = 4;
  absl::StatusOr<GenerateResult> whole = Run(o);
  ASSERT_TRUE(whole.ok()) << whole.status();
  for (int chunk : {2, 4, 7}) {  // 9 prompt tokens: last chunks of 3, 5... never 1 token
    if (prompt_.size() % chunk == 1) continue;
    o.prefill_chunk = chunk;
    absl::StatusOr<GenerateResult> r = Run(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->first_logits, whole->first_logits) << "chunk " << chunk;
    EXPECT_EQ(r->tokens, whole->tokens) << "chunk " << chunk;
  }
}

TEST_F(GeneratorTest, SeededSamplingRepeatsAndGemmaGeneratesToo) {
  GenerateOptions o;
  o.max_tokens = 8;
  o.sampling.temperature = 0.8f;
  o.sampling.seed = 1234;
  absl::StatusOr<GenerateResult> a = Run(o);
  absl::StatusOr<GenerateResult> b = Run(o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);

  absl::StatusOr<TinyModel> gemma = LoadTinyModel(TinyGemma3Options(GgmlType::kQ4_1));
  ASSERT_TRUE(gemma.ok()) << gemma.status();
  CpuBackend g(2);
  ASSERT_TRUE(g.LoadModel(gemma->spec.config, gemma->spec.weights).ok());
  o.sampling = {};
  absl::StatusOr<GenerateResult> x = Generate(g, 97, prompt_, o);
  absl::StatusOr<GenerateResult> y = Generate(g, 97, prompt_, o);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(x->tokens.size(), 8u);
  EXPECT_EQ(x->tokens, y->tokens);
}

}  // namespace
}  // namespace conclave::engine
