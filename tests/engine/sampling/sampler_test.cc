#include "engine/sampling/sampler.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/sampling/fast_exp.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// FullSortDraw below must round exactly like the sampler (see sampler.cc).
#pragma GCC optimize("fp-contract=off")

// Counts global allocations so a test can check that Sample allocates nothing
// after warm-up. Only the plain forms are replaced; they pair with each other.
namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

// noinline: GCC would otherwise see free() meet operator new and warn.
[[gnu::noinline]] void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace conclave::engine {
namespace {

const std::vector<int32_t> kNoTokens;

int32_t Draw(Sampler& s, const std::vector<float>& logits) {
  return s.Sample(logits, kNoTokens, kNoTokens).token;
}

std::vector<float> RandomLogits(int vocab, uint64_t seed, float stddev = 3.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = normal(gen);
  return logits;
}

// float64 log-softmax, the reference for every reported logprob.
std::vector<double> LogSoftmax(const std::vector<float>& logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - max);
  std::vector<double> out;
  for (float l : logits) out.push_back(l - max - std::log(sum));
  return out;
}

// Ids by descending logit, ties by ascending id: a full sort.
std::vector<int32_t> SortedIds(const std::vector<float>& logits) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  return ids;
}

// The tokens top-k, top-p and min-p (in that order) allow, with their
// renormalised probabilities, by brute force over a full sort in float64.
std::map<int32_t, double> AllowedSet(const std::vector<float>& logits, const SamplingParams& p) {
  const std::vector<int32_t> ids = SortedIds(logits);
  const double max = logits[ids[0]];
  std::vector<double> w;
  for (int32_t id : ids) w.push_back(std::exp((logits[id] - max) / p.temperature));
  size_t n = ids.size();
  if (p.top_k > 0) n = std::min(n, static_cast<size_t>(p.top_k));
  if (p.top_p < 1.0f) {
    const double total = std::accumulate(w.begin(), w.begin() + n, 0.0);
    double cumulative = 0.0;
    for (size_t i = 0; i < n; ++i) {
      cumulative += w[i] / total;
      if (cumulative >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  size_t kept = 0;
  while (kept < n && w[kept] >= p.min_p) ++kept;  // w[i] = p_i / p_max
  const double total = std::accumulate(w.begin(), w.begin() + kept, 0.0);
  std::map<int32_t, double> allowed;
  for (size_t i = 0; i < kept; ++i) allowed[ids[i]] = w[i] / total;
  return allowed;
}

TEST(SamplerTest, TemperatureZeroIsArgmaxWithTheLowestIdOnTies) {
  Sampler s({.temperature = 0.0f, .seed = 1});
  EXPECT_EQ(Draw(s, {0.1f, 3.0f, -2.0f, 3.0f}), 1);
  EXPECT_EQ(Argmax(std::vector<float>{-5.0f}), 0);
}

// The greedy rule the llama.cpp parity tests rely on, written out plainly.
int32_t FirstMaximum(const std::vector<float>& logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

TEST(SamplerTest, GreedyIsExactlyTheFirstMaximumOnRowsFullOfTies) {
  std::mt19937_64 gen(3);
  std::uniform_int_distribution<int> level(-4, 4);
  for (int row = 0; row < 200; ++row) {
    // Few distinct values, so the maximum is nearly always shared; -0.0 and
    // 0.0 compare equal and must resolve to the first index too.
    std::vector<float> logits(1 + row * 7);
    for (float& l : logits) l = level(gen) * 0.5f;
    if (row % 3 == 0) std::replace(logits.begin(), logits.end(), 0.0f, -0.0f);
    Sampler s({.logprobs = 3});
    ASSERT_EQ(Draw(s, logits), FirstMaximum(logits)) << "row " << row;
    ASSERT_EQ(Argmax(logits), FirstMaximum(logits)) << "row " << row;
  }
}

TEST(SamplerTest, TheSameSeedGivesTheSameDraws) {
  std::vector<float> logits = {1.0f, 1.2f, 0.9f, 1.1f, 0.5f};
  Sampler a({.temperature = 1.0f, .seed = 1234}), b({.temperature = 1.0f, .seed = 1234}),
      c({.temperature = 1.0f, .seed = 99});
  std::vector<int> da, db, dc;
  for (int i = 0; i < 64; ++i) {
    da.push_back(Draw(a, logits));
    db.push_back(Draw(b, logits));
    dc.push_back(Draw(c, logits));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(SamplerTest, ASeedGivesTheSameTokensWhateverElseIsSampledInBetween) {
  const std::vector<float> logits = RandomLogits(300, 8, 1.0f);
  const SamplingParams p = {.temperature = 0.9f, .top_p = 0.95f, .top_k = 50, .seed = 77};
  Sampler alone(p);
  std::vector<int32_t> expected;
  for (int i = 0; i < 50; ++i) expected.push_back(Draw(alone, logits));

  Sampler batched(p), neighbour({.temperature = 1.0f, .seed = 77}),
      other({.temperature = 1.3f, .seed = 5});
  std::vector<int32_t> got;
  for (int i = 0; i < 50; ++i) {
    Draw(neighbour, logits);
    got.push_back(Draw(batched, logits));
    Draw(other, RandomLogits(300, i));
  }
  EXPECT_EQ(got, expected);
}

TEST(SamplerTest, DrawsFollowTheSoftmaxAtTheTemperature) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  const float temperature = 0.7f;
  Sampler s({.temperature = temperature, .seed = 5});
  std::map<int, int> counts;
  const int n = 60000;
  for (int i = 0; i < n; ++i) counts[Draw(s, logits)]++;
  double z = 0.0;
  for (float l : logits) z += std::exp(l / temperature);
  for (int id = 0; id < 3; ++id) {
    const double p = std::exp(logits[id] / temperature) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(counts[id] / double{n}, p, 5 * std::sqrt(p * (1 - p) / n)) << id;
  }
}

TEST(SamplerTest, TopPKeepsOnlyTheNucleus) {
  // softmax at T=1: [0.665, 0.245, 0.090]; top_p=0.6 keeps only id 0.
  Sampler s({.temperature = 1.0f, .top_p = 0.6f, .seed = 7});
  for (int i = 0; i < 500; ++i) ASSERT_EQ(Draw(s, {2.0f, 1.0f, 0.0f}), 0);
  // top_p=0.8 keeps ids 0 and 1, never 2.
  Sampler t({.temperature = 1.0f, .top_p = 0.8f, .seed = 7});
  std::map<int, int> counts;
  for (int i = 0; i < 2000; ++i) counts[Draw(t, {2.0f, 1.0f, 0.0f})]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(SamplerTest, TruncationDrawsFollowTheBruteForceAllowedSetAndItsRenormalisedProbabilities) {
  // 40 tokens: a few strong, a long tail, some exact ties.
  std::vector<float> logits = RandomLogits(40, 11, 1.5f);
  logits[7] = logits[3];
  logits[20] = logits[3];
  const std::vector<SamplingParams> cases = {
      {.temperature = 1.0f, .top_k = 5},
      {.temperature = 0.7f, .top_p = 0.8f},
      {.temperature = 1.5f, .min_p = 0.2f},
      {.temperature = 1.0f, .top_p = 0.9f, .top_k = 12},
      {.temperature = 2.0f, .top_p = 0.7f, .top_k = 30, .min_p = 0.3f},
      {.temperature = 1.2f, .top_k = 40},
      {.temperature = 0.5f, .top_p = 1.0f, .min_p = 0.05f},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    SamplingParams p = cases[c];
    ASSERT_TRUE(ValidateSamplingParams(p).ok());
    const std::map<int32_t, double> allowed = AllowedSet(logits, p);
    std::map<int32_t, int> counts;
    const int n = 30000;
    // Many seeds, a few draws each.
    for (int seed = 0; seed < n / 10; ++seed) {
      p.seed = 1000 * c + seed;
      Sampler s(p);
      for (int i = 0; i < 10; ++i) counts[Draw(s, logits)]++;
    }
    for (const auto& [id, count] : counts) {
      EXPECT_TRUE(allowed.contains(id)) << "case " << c << " drew disallowed token " << id;
    }
    for (const auto& [id, prob] : allowed) {
      const double freq = counts[id] / double{n};
      if (prob > 0.002) {
        EXPECT_GT(counts[id], 0) << "case " << c << " never drew " << id;
      }
      EXPECT_NEAR(freq, prob, 5 * std::sqrt(prob * (1 - prob) / n) + 1e-4)
          << "case " << c << " token " << id;
    }
  }
}

// The documented draw (steps 3-7 of sampler.h) over a full sort of the
// vocabulary, with the same exp and random bits, to check that the partial
// selections of the sampler keep exactly the same candidates in the same
// order.
int32_t FullSortDraw(const std::vector<float>& logits, const SamplingParams& p,
                     std::mt19937_64& rng) {
  const float max = *std::max_element(logits.begin(), logits.end());
  const float inv_t = static_cast<float>(1.0 / p.temperature);
  const auto weight = [&](int32_t id) { return FastExpNonPositive((logits[id] - max) * inv_t); };
  const bool truncated = p.top_k > 0 || p.top_p < 1.0f;
  std::vector<int32_t> order = SortedIds(logits);
  if (!truncated) std::sort(order.begin(), order.end());
  size_t n = order.size();
  if (p.top_k > 0) n = std::min(n, static_cast<size_t>(p.top_k));
  if (p.top_p < 1.0f) {
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += weight(order[i]);
    double cumulative = 0.0;
    for (size_t i = 0; i < n; ++i) {
      cumulative += weight(order[i]);
      if (cumulative >= p.top_p * total) {
        n = i + 1;
        break;
      }
    }
  }
  std::vector<std::pair<int32_t, double>> kept;
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = order[i];
    if (p.min_p > 0.0f && logits[id] < max + p.temperature * std::log(double{p.min_p})) {
      continue;
    }
    kept.push_back({id, weight(id)});
    total += kept.back().second;
  }
  const double r = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0.0;
  for (const auto& [id, w] : kept) {
    cumulative += w;
    if (r < cumulative) return id;
  }
  return kept.back().first;
}

TEST(SamplerTest, PartialSelectionDrawsExactlyWhatAFullSortWouldOnALargeVocabulary) {
  // A smooth row, and one rounded to quarters so that ties straddle every
  // selection boundary.
  std::vector<float> quantized = RandomLogits(49152, 22, 2.0f);
  for (float& l : quantized) l = std::round(l * 4.0f) / 4.0f;
  const std::vector<std::vector<float>> rows = {RandomLogits(49152, 21, 2.0f), quantized};
  const std::vector<SamplingParams> cases = {
      {.temperature = 1.0f},
      {.temperature = 0.8f, .top_p = 0.95f},  // a nucleus of thousands
      {.temperature = 0.3f, .top_p = 0.5f},
      {.temperature = 1.0f, .top_p = 0.999f},
      {.temperature = 1.0f, .top_k = 40},
      {.temperature = 1.1f, .top_p = 0.9f, .top_k = 1000, .min_p = 0.01f},
      {.temperature = 0.9f, .top_p = 0.9f, .top_k = 300},
      {.temperature = 0.7f, .min_p = 0.1f},
      {.temperature = 1.0f, .top_p = 0.8f, .min_p = 0.2f},
      {.temperature = 1.0f, .top_k = 1},
  };
  for (size_t row = 0; row < rows.size(); ++row) {
    const std::vector<float>& logits = rows[row];
    for (size_t c = 0; c < cases.size(); ++c) {
      SamplingParams p = cases[c];
      p.seed = 40 + c;
      Sampler s(p);
      std::mt19937_64 rng(p.seed);
      std::set<int32_t> distinct;
      for (int i = 0; i < 30; ++i) {
        const int32_t got = Draw(s, logits);
        ASSERT_EQ(got, FullSortDraw(logits, p, rng)) << "row " << row << " case " << c
                                                      << " draw " << i;
        distinct.insert(got);
      }
      if (c == 1) {
        EXPECT_GT(distinct.size(), 20u);
      }
    }
  }
}

TEST(SamplerTest, TiesAtTheNucleusBoundaryGoToTheLowerIds) {
  // 1000 equal logits: top_p = 0.5 keeps exactly ids 0..499, top_k = 10 ids 0..9.
  const std::vector<float> logits(1000, 1.5f);
  std::set<int32_t> nucleus, top10;
  for (uint64_t seed = 0; seed < 3000; ++seed) {
    Sampler p({.temperature = 1.0f, .top_p = 0.5f, .seed = seed});
    Sampler k({.temperature = 1.0f, .top_k = 10, .seed = seed});
    nucleus.insert(Draw(p, logits));
    top10.insert(Draw(k, logits));
  }
  EXPECT_EQ(*nucleus.rbegin(), 499);
  EXPECT_GT(nucleus.size(), 450u);
  EXPECT_EQ(top10.size(), 10u);
  EXPECT_EQ(*top10.rbegin(), 9);
}

TEST(SamplerTest, AVanishingTemperatureDrawsOnlyAmongTheTiedMaxima) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.9999998f, 3.0f, -4.0f};
  std::set<int32_t> drawn;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Sampler s({.temperature = 1e-30f, .seed = seed});
    drawn.insert(Draw(s, logits));
  }
  EXPECT_EQ(drawn, (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, PenaltiesChangeTheLogitsAsComputedByHand) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  const std::vector<int32_t> prompt = {0, 1, 0};
  const std::vector<int32_t> generated = {3, 3, 1, 4};
  SamplingParams p = {.repetition_penalty = 2.0f, .presence_penalty = 0.5f,
                      .frequency_penalty = 0.25f};
  // id 0: prompt only, positive: 2 / 2 = 1
  // id 1: prompt and once generated, negative: -1 * 2 - (1 * 0.25 + 0.5) = -2.75
  // id 2: untouched 0.5
  // id 3: generated twice: 3 / 2 - (2 * 0.25 + 0.5) = 0.5
  // id 4: generated once, negative: -2 * 2 - 0.75 = -4.75
  // id 5: untouched 1
  const std::vector<double> penalized = {1.0, -2.75, 0.5, 0.5, -4.75, 1.0};

  // Greedy takes the penalized argmax (ids 0 and 5 tie: the lower id), not
  // the raw one (id 3).
  Sampler greedy(p);
  EXPECT_EQ(greedy.Sample(logits, prompt, generated).token, 0);

  // Top-2 of the penalized row is {0, 5}; raw it would be {3, 0}.
  p.temperature = 1.0f;
  p.top_k = 2;
  std::set<int32_t> drawn;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    p.seed = seed;
    Sampler s(p);
    drawn.insert(s.Sample(logits, prompt, generated).token);
  }
  EXPECT_EQ(drawn, (std::set<int32_t>{0, 5}));

  // At T=1 without truncation, draws follow softmax(penalized).
  p.top_k = 0;
  p.seed = 9;
  Sampler s(p);
  std::map<int32_t, int> counts;
  const int n = 60000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits, prompt, generated).token]++;
  double z = 0.0;
  for (double l : penalized) z += std::exp(l);
  for (int id = 0; id < 6; ++id) {
    const double prob = std::exp(penalized[id]) / z;
    EXPECT_NEAR(counts[id] / double{n}, prob, 5 * std::sqrt(prob * (1 - prob) / n) + 1e-4)
        << id;
  }
}

TEST(SamplerTest, RepetitionPenaltyHitsEachDistinctTokenOnce) {
  // Applied once: 2 / 2 = 1 > 0.9. Applied per occurrence it would lose.
  Sampler s({.repetition_penalty = 2.0f});
  EXPECT_EQ(s.Sample(std::vector<float>{2.0f, 0.9f}, std::vector<int32_t>{0, 0, 0},
                     std::vector<int32_t>{0, 0})
                .token,
            0);
}

TEST(SamplerTest, RepetitionPenaltyMultipliesNegativeLogits) {
  Sampler s({.repetition_penalty = 2.0f});
  // -1 * 2 = -2 < -1.5: the penalized token loses.
  EXPECT_EQ(s.Sample(std::vector<float>{-1.0f, -1.5f}, std::vector<int32_t>{0}, kNoTokens).token,
            1);
  // A repetition penalty below 1 rewards repeats: -1 * 0.5 = -0.5 wins.
  Sampler r({.repetition_penalty = 0.5f});
  EXPECT_EQ(r.Sample(std::vector<float>{-1.0f, -0.7f}, std::vector<int32_t>{0}, kNoTokens).token,
            0);
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesIgnoreThePrompt) {
  const std::vector<float> logits = {1.0f, 0.9f};
  Sampler presence({.presence_penalty = 0.5f});
  EXPECT_EQ(presence.Sample(logits, std::vector<int32_t>{0, 0}, kNoTokens).token, 0);
  EXPECT_EQ(presence.Sample(logits, std::vector<int32_t>{0}, std::vector<int32_t>{0}).token, 1);
  // Frequency scales with the count: 1.0 - 0.05 * 3 = 0.85 < 0.9.
  Sampler frequency({.frequency_penalty = 0.05f});
  EXPECT_EQ(frequency.Sample(logits, kNoTokens, std::vector<int32_t>{0, 0}).token, 0);
  EXPECT_EQ(frequency.Sample(logits, kNoTokens, std::vector<int32_t>{0, 0, 0}).token, 1);
  // Negative values reward repeats.
  Sampler reward({.presence_penalty = -0.5f});
  EXPECT_EQ(reward.Sample(logits, kNoTokens, std::vector<int32_t>{1}).token, 1);
}

TEST(SamplerTest, PenaltiesDoNotLeakIntoTheNextCall) {
  Sampler s({.presence_penalty = 2.0f});
  const std::vector<float> logits = {1.0f, 0.0f};
  EXPECT_EQ(s.Sample(logits, kNoTokens, std::vector<int32_t>{0}).token, 1);
  EXPECT_EQ(s.Sample(logits, kNoTokens, kNoTokens).token, 0);
}

TEST(SamplerTest, LogprobTopAndConfidenceDescribeTheRawLogits) {
  std::vector<float> logits = RandomLogits(1000, 4, 2.5f);
  logits[10] = logits[500] = logits[999] = 20.0f;  // a tied maximum
  const std::vector<double> ref = LogSoftmax(logits);
  const std::vector<int32_t> sorted = SortedIds(logits);
  const std::vector<int32_t> generated = {10, 10, 500};
  // Penalties and temperature must not leak into the reported numbers.
  Sampler s({.temperature = 0.8f, .top_p = 0.9f, .repetition_penalty = 1.3f,
             .presence_penalty = 1.0f, .seed = 3, .logprobs = 5, .confidence_top_k = 7});
  for (int i = 0; i < 20; ++i) {
    const SampledToken t = s.Sample(logits, generated, generated);
    EXPECT_NEAR(t.logprob, ref[t.token], 1e-5);
    ASSERT_EQ(t.top.size(), 5u);
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(t.top[j].token, sorted[j]) << j;
      EXPECT_NEAR(t.top[j].logprob, ref[sorted[j]], 1e-5) << j;
    }
    double sum = 0.0;
    for (int j = 0; j < 7; ++j) sum += ref[sorted[j]];
    EXPECT_NEAR(t.confidence, -sum / 7, 1e-5);
  }
  EXPECT_THAT(std::vector<int32_t>(sorted.begin(), sorted.begin() + 3),
              ::testing::ElementsAre(10, 500, 999));
}

TEST(SamplerTest, GreedyReportsTheRawLogprobAndNoAlternativesByDefault) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f};
  Sampler s({});
  const SampledToken t = s.Sample(logits, kNoTokens, kNoTokens);
  const std::vector<double> ref = LogSoftmax(logits);
  EXPECT_EQ(t.token, 1);
  EXPECT_NEAR(t.logprob, ref[1], 1e-6);
  EXPECT_TRUE(t.top.empty());
  // confidence_top_k = 20 > vocab: the mean runs over the whole vocabulary.
  EXPECT_NEAR(t.confidence, -(ref[0] + ref[1] + ref[2]) / 3, 1e-6);
}

TEST(SamplerTest, ConfidenceOfTheDefaultTop20MatchesTheReferenceOnALargeVocabulary) {
  const std::vector<float> logits = RandomLogits(262144, 6, 3.0f);
  const std::vector<double> ref = LogSoftmax(logits);
  const std::vector<int32_t> sorted = SortedIds(logits);
  Sampler s({.logprobs = 20});
  const SampledToken t = s.Sample(logits, kNoTokens, kNoTokens);
  double sum = 0.0;
  for (int j = 0; j < 20; ++j) sum += ref[sorted[j]];
  EXPECT_NEAR(t.confidence, -sum / 20, 1e-4);
  EXPECT_EQ(t.token, sorted[0]);
  ASSERT_EQ(t.top.size(), 20u);
  EXPECT_EQ(t.top.back().token, sorted[19]);
}

TEST(SamplerTest, SamplingAllocatesNothingAfterWarmUp) {
  const std::vector<float> logits = RandomLogits(49152, 2);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int32_t> generated = {9, 10, 9};
  for (const SamplingParams& p : std::vector<SamplingParams>{
           {.temperature = 0.0f, .repetition_penalty = 1.1f},
           {.temperature = 0.0f},
           {.temperature = 0.9f, .top_p = 0.95f, .top_k = 50, .min_p = 0.05f,
            .repetition_penalty = 1.1f, .presence_penalty = 0.3f, .frequency_penalty = 0.2f},
           {.temperature = 1.0f, .top_p = 0.9f},
           {.temperature = 1.0f},
       }) {
    Sampler s(p);
    s.Sample(logits, prompt, generated);  // warm-up sizes the scratch buffers
    const int64_t before = g_allocations.load();
    for (int i = 0; i < 5; ++i) s.Sample(logits, prompt, generated);
    EXPECT_EQ(g_allocations.load() - before, 0) << "temperature " << p.temperature;
  }
}

TEST(FastExpTest, StaysWithinFourTenthsOfAMillionthOfStdExpAndNeverDecreases) {
  float previous = 0.0f;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = -87.0f + 87.0f * static_cast<float>(i) / 2000000.0f;
    const float got = FastExpNonPositive(x);
    const double want = std::exp(static_cast<double>(x));
    ASSERT_LE(std::abs(got - want), 4e-7 * want) << x;
    ASSERT_GE(got, previous) << x;
    previous = got;
  }
  EXPECT_EQ(FastExpNonPositive(0.0f), 1.0f);
  EXPECT_EQ(FastExpNonPositive(-87.5f), 0.0f);
  EXPECT_EQ(FastExpNonPositive(-std::numeric_limits<float>::infinity()), 0.0f);
}

TEST(SamplerTest, RejectsOutOfRangeParameters) {
  EXPECT_FALSE(ValidateSamplingParams({.temperature = -1.0f}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = NAN}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = INFINITY}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = 1.0f, .top_p = 0.0f}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = 1.0f, .top_p = 1.5f}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0.7f, .top_p = 0.9f}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0.7f, .top_p = 1.0f, .top_k = 40,
                                      .min_p = 1.0f, .repetition_penalty = 0.5f,
                                      .presence_penalty = -2.0f, .frequency_penalty = 2.0f,
                                      .seed = ~0ull, .logprobs = 20, .confidence_top_k = 1})
                  .ok());
}

TEST(SamplerTest, ValidationMessagesNameTheFieldItsValueAndTheAllowedRange) {
  const std::vector<std::pair<SamplingParams, std::string>> cases = {
      {{.temperature = -1.0f}, "temperature=-1 must be a finite number >= 0"},
      {{.top_p = 0.0f}, "top_p=0 must be in (0, 1]"},
      {{.top_p = NAN}, "top_p=nan must be in (0, 1]"},
      {{.top_k = -1}, "top_k=-1 must be >= 0 (0 disables it)"},
      {{.min_p = 1.5f}, "min_p=1.5 must be in [0, 1]"},
      {{.repetition_penalty = 0.0f},
       "repetition_penalty=0 must be a finite number > 0 (1 disables it)"},
      {{.presence_penalty = 2.5f}, "presence_penalty=2.5 must be in [-2, 2]"},
      {{.frequency_penalty = -3.0f}, "frequency_penalty=-3 must be in [-2, 2]"},
      {{.logprobs = 21}, "logprobs=21 must be in [0, 20]"},
      {{.logprobs = -1}, "logprobs=-1 must be in [0, 20]"},
      {{.confidence_top_k = 0}, "confidence_top_k=0 must be in [1, 20]"},
  };
  for (const auto& [params, message] : cases) {
    const absl::Status s = ValidateSamplingParams(params);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_EQ(s.message(), message);
  }
}

TEST(SamplerDeathTest, RefusesUnvalidatedParamsAndTokensOutsideTheVocabulary) {
  EXPECT_DEATH(Sampler({.top_k = -1}), "top_k=-1");
  Sampler s({.presence_penalty = 1.0f});
  EXPECT_DEATH(s.Sample(std::vector<float>{1.0f, 2.0f}, kNoTokens, std::vector<int32_t>{2}),
               "token 2 outside the vocabulary of 2");
}

}  // namespace
}  // namespace conclave::engine
