// conclave-bench: the batched engine in-process on one model, printing JSON.
//
//   conclave-bench --model PATH [--threads 2] [--runs 5] [--kv-dtype fp16|bf16]
//
// Measures (median over --runs, each figure from its own fresh engine):
//  - decode tokens/s with 1, 4, 8, 16 and 32 concurrent sequences (separate
//    requests with distinct prompts), counted between the moment every
//    sequence has its first token and the last token;
//  - prefill tokens/s of a 512-token prompt, and time to first token of a
//    short chat prompt;
//  - a group of N=8 samples of a 512-token prompt, 128 tokens each, against
//    N=1: wall time ratio, and the most KV blocks in use against what 8
//    independent requests would hold;
//  - the bytes one decode step reads (every weight matrix once, whatever the
//    number of sequences, plus each sequence's K and V at the mean context
//    of the decode figures) and the read bandwidth that achieves, to set
//    against conclave-membw's measure of the machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/model/model.h"
#include "engine/tools/dash_flags.h"
#include "kernels/cpu/cpu_backend.h"

ABSL_FLAG(std::string, model, "", "path to a GGUF model file");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(int, runs, 5, "runs per figure (the median is reported)");
ABSL_FLAG(bool, json, true, "print JSON (the only format)");
ABSL_FLAG(std::string, concurrency, "1,4,8,16,32", "decode concurrency levels");
ABSL_FLAG(int, decode_tokens, 64, "tokens per sequence in the decode figures");
ABSL_FLAG(std::string, kv_dtype, "fp16", "KV cache element type: fp16 or bf16");
ABSL_FLAG(bool, group, true,
          "also measure prefill, time to first token and the N=8 group (off: decode only)");

namespace {

using conclave::engine::Engine;
using conclave::engine::EngineConfig;
using conclave::engine::EngineRequest;
using conclave::engine::Model;
using conclave::engine::RequestStream;
using conclave::engine::RequestUpdate;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char kText[] =
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based inks and a wooden press adapted from "
    "those used to make wine. Before that, books were copied by hand, which made them rare "
    "and expensive. Within fifty years of Gutenberg's first Bible, presses were working in "
    "more than two hundred cities across Europe, and millions of volumes had been printed. ";

// Bytes of the weights one step reads: every matrix of every layer, the
// norms and the output matrix once, plus one embedding row per token.
int64_t WeightBytesPerStep(const conclave::kernels::ModelConfig& c,
                           const conclave::kernels::ModelWeights& w, int tokens) {
  using conclave::kernels::WeightTensor;
  auto bytes = [](const WeightTensor& t) -> int64_t {
    return t.present() ? static_cast<int64_t>(conclave::kernels::RowBytes(t.type, t.cols())) * t.rows()
                       : 0;
  };
  int64_t total = bytes(w.output) + bytes(w.output_norm) +
                  tokens * static_cast<int64_t>(
                               conclave::kernels::RowBytes(w.token_embd.type, c.hidden));
  for (const conclave::kernels::LayerWeights& l : w.layers) {
    for (const WeightTensor* t :
         {&l.attn_norm, &l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_norm, &l.ffn_gate,
          &l.ffn_up, &l.ffn_down, &l.attn_q_norm, &l.attn_k_norm, &l.post_attention_norm,
          &l.post_ffw_norm}) {
      total += bytes(*t);
    }
  }
  return total;
}

// Bytes of K and V one sequence's decode token reads at `context` positions
// (sliding-window layers read at most their window).
int64_t KvBytesPerToken(const conclave::kernels::ModelConfig& c, int64_t context,
                        conclave::kernels::KvDtype dtype) {
  int64_t total = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    const bool sliding = c.sliding_window > 0 && c.layer_is_sliding[l];
    const int64_t positions = sliding ? std::min<int64_t>(context, c.sliding_window) : context;
    total += 2 * positions * c.n_kv_heads * c.head_dim * conclave::kernels::KvDtypeBytes(dtype);
  }
  return total;
}

class Bench {
 public:
  Bench(Model& model, int threads, conclave::kernels::KvDtype kv_dtype)
      : model_(model), threads_(threads), kv_dtype_(kv_dtype) {}

  std::unique_ptr<Engine> NewEngine() {
    backend_ = std::make_unique<conclave::kernels::cpu::CpuBackend>(threads_);
    Check(backend_->LoadModel(model_.config(), model_.weights()));
    EngineConfig c;
    c.kv_cache_bytes = 1ll << 30;
    c.kv_dtype = kv_dtype_;
    c.scheduler.max_running_sequences = 64;
    absl::StatusOr<std::unique_ptr<Engine>> e =
        Engine::Create(*backend_, model_.config(), model_.tokenizer(), c);
    Check(e.status());
    return std::move(*e);
  }

  // `n` prompt tokens cut from the text repeated, starting at a different
  // place for each `variant` (so prompts of separate requests differ).
  std::vector<int32_t> Prompt(int n, int variant) {
    std::string text;
    while (static_cast<int>(text.size()) < 8 * n + 64) text += kText;
    std::vector<int32_t> ids = model_.tokenizer().Encode(text, false, false);
    std::vector<int32_t> out(ids.begin() + variant % 50, ids.begin() + variant % 50 + n);
    return out;
  }

  static EngineRequest Request(std::vector<int32_t> prompt, int n, int max_tokens) {
    EngineRequest r;
    r.prompt = std::move(prompt);
    r.n = n;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    return r;
  }

  struct Timing {
    double first_token = 0;  // seconds from submit to the request's first token
    double end = 0;          // seconds from submit to the last token
    int tokens = 0;
    int peak_used_blocks = 0;
  };

  // Submits every request at once and reads all streams until done.
  std::vector<Timing> RunAll(Engine& engine, std::vector<EngineRequest> requests) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    const Clock::time_point start = Clock::now();
    for (EngineRequest& r : requests) {
      absl::StatusOr<std::shared_ptr<RequestStream>> s = engine.Submit(std::move(r));
      Check(s.status());
      streams.push_back(*s);
    }
    std::vector<Timing> t(streams.size());
    std::vector<bool> done(streams.size(), false);
    int peak = 0;
    size_t remaining = streams.size();
    while (remaining > 0) {
      for (size_t i = 0; i < streams.size(); ++i) {
        if (done[i]) continue;
        RequestUpdate u;
        if (streams[i]->Next(u, absl::Milliseconds(1)) != RequestStream::Poll::kUpdate) continue;
        const double now = Seconds(start, Clock::now());
        int got = 0;
        for (const auto& d : u.deltas) got += static_cast<int>(d.tokens.size());
        if (got > 0 && t[i].tokens == 0) t[i].first_token = now;
        if (got > 0) t[i].end = now;
        t[i].tokens += got;
        peak = std::max(peak, engine.stats().kv.used_blocks);
        if (u.done) {
          Check(u.status);
          done[i] = true;
          --remaining;
        }
      }
    }
    for (Timing& x : t) x.peak_used_blocks = peak;
    return t;
  }

  // Aggregate decode tokens/s with `c` concurrent sequences.
  double Decode(int c, int tokens) {
    std::unique_ptr<Engine> engine = NewEngine();
    std::vector<EngineRequest> reqs;
    for (int i = 0; i < c; ++i) reqs.push_back(Request(Prompt(16, i), 1, tokens));
    std::vector<Timing> t = RunAll(*engine, std::move(reqs));
    double all_started = 0, end = 0;
    int decoded = 0;
    for (const Timing& x : t) {
      all_started = std::max(all_started, x.first_token);
      end = std::max(end, x.end);
    }
    // Tokens produced after every sequence had started decoding.
    for (const Timing& x : t) decoded += x.tokens - 1;
    // Approximation: sequences start within a step or two of each other.
    return decoded / std::max(end - all_started, 1e-9);
  }

  double PrefillTokensPerSecond(int n) {
    std::unique_ptr<Engine> engine = NewEngine();
    std::vector<EngineRequest> reqs;
    reqs.push_back(Request(Prompt(n, 0), 1, 1));
    std::vector<Timing> t = RunAll(*engine, std::move(reqs));
    return n / t[0].first_token;
  }

  double TimeToFirstToken() {
    std::unique_ptr<Engine> engine = NewEngine();
    std::vector<EngineRequest> reqs;
    reqs.push_back(Request(model_.tokenizer().Encode(
        "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n"
        "<|im_start|>assistant\n", false, true), 1, 1));
    return RunAll(*engine, std::move(reqs))[0].first_token;
  }

  struct Group { double seconds; int peak_blocks; };
  Group RunGroup(int n, int prompt_len, int tokens) {
    std::unique_ptr<Engine> engine = NewEngine();
    std::vector<EngineRequest> reqs;
    reqs.push_back(Request(Prompt(prompt_len, 1), n, tokens));
    std::vector<Timing> t = RunAll(*engine, std::move(reqs));
    return {t[0].end, t[0].peak_used_blocks};
  }

 private:
  static void Check(const absl::Status& s) {
    if (!s.ok()) {
      std::cerr << "conclave-bench: " << s << "\n";
      std::exit(1);
    }
  }

  Model& model_;
  const int threads_;
  const conclave::kernels::KvDtype kv_dtype_;
  std::unique_ptr<conclave::kernels::cpu::CpuBackend> backend_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("conclave-bench --model PATH [--threads 2] [--runs 5]");
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(absl::GetFlag(FLAGS_model));
  if (!model.ok()) {
    std::cerr << "conclave-bench: " << model.status() << "\n";
    return 1;
  }
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  const int threads = absl::GetFlag(FLAGS_threads);
  const absl::StatusOr<conclave::kernels::KvDtype> kv_dtype =
      conclave::kernels::ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) {
    std::cerr << "conclave-bench: " << kv_dtype.status() << "\n";
    return 1;
  }
  Bench bench(**model, threads, *kv_dtype);

  std::vector<int> levels;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
    int c = 0;
    if (absl::SimpleAtoi(part, &c) && c > 0) levels.push_back(c);
  }
  std::vector<std::string> decode_json, bytes_json, gbps_json;
  double decode_1 = 0, decode_8 = 0;
  // The decode figures run from 16 prompt tokens to 16 + decode_tokens
  // positions: their mean context.
  const int64_t mean_context = 16 + absl::GetFlag(FLAGS_decode_tokens) / 2;
  for (int c : levels) {
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(bench.Decode(c, absl::GetFlag(FLAGS_decode_tokens)));
    const double m = Median(v);
    if (c == 1) decode_1 = m;
    if (c == 8) decode_8 = m;
    decode_json.push_back(absl::StrFormat("\"%d\":%.2f", c, m));
    const int64_t step_bytes =
        WeightBytesPerStep((*model)->config(), (*model)->weights(), c) +
        c * KvBytesPerToken((*model)->config(), mean_context, *kv_dtype);
    bytes_json.push_back(absl::StrFormat("\"%d\":%d", c, step_bytes));
    // Steps per second = tokens per second / c.
    gbps_json.push_back(absl::StrFormat("\"%d\":%.2f", c, step_bytes * (m / c) / 1e9));
    std::cerr << absl::StrFormat("decode c=%d: %.1f tok/s, %.1f MB per step\n", c, m,
                                 step_bytes / 1e6);
  }
  const std::string bytes_fields = absl::StrCat(
      ",\"decode_mean_context\":", mean_context, ",\"decode_step_bytes\":{",
      absl::StrJoin(bytes_json, ","), "},\"decode_read_gb_per_s\":{",
      absl::StrJoin(gbps_json, ","), "}");
  const std::string header =
      absl::StrCat("{\"model\":\"", (*model)->name(), "\",\"threads\":", threads,
                   ",\"kv_dtype\":\"", conclave::kernels::KvDtypeName(*kv_dtype),
                   "\",\"runs\":", runs);
  std::vector<double> prefill, ttft, g1, g8, blocks8;
  if (!absl::GetFlag(FLAGS_group)) {
    std::cout << header << ",\"decode_tokens_per_second\":{"
              << absl::StrJoin(decode_json, ",") << "}" << bytes_fields << "}\n";
    return 0;
  }
  for (int r = 0; r < runs; ++r) {
    prefill.push_back(bench.PrefillTokensPerSecond(512));
    ttft.push_back(bench.TimeToFirstToken());
    g1.push_back(bench.RunGroup(1, 512, 128).seconds);
    Bench::Group g = bench.RunGroup(8, 512, 128);
    g8.push_back(g.seconds);
    blocks8.push_back(g.peak_blocks);
    std::cerr << absl::StrFormat("run %d: prefill %.1f tok/s, group N=1 %.2fs N=8 %.2fs\n", r,
                                 prefill.back(), g1.back(), g8.back());
  }
  const int bs = 16;
  const int prompt_blocks = 512 / bs, gen_blocks = (128 + bs - 1) / bs;
  const int independent_blocks = 8 * ((512 + 128 + bs - 1) / bs);
  const int target_blocks = prompt_blocks + 8 * gen_blocks + 8;
  const double group_ratio = Median(g8) / Median(g1);
  std::cout << header << ",\"decode_tokens_per_second\":{"
            << absl::StrJoin(decode_json, ",") << "}" << bytes_fields
            << absl::StrFormat(",\"decode_8_over_1\":%.3f", decode_1 > 0 ? decode_8 / decode_1 : 0)
            << absl::StrFormat(",\"prefill_512_tokens_per_second\":%.2f", Median(prefill))
            << absl::StrFormat(",\"time_to_first_token_seconds\":%.4f", Median(ttft))
            << absl::StrFormat(",\"group\":{\"prompt_tokens\":512,\"generated_tokens\":128,"
                               "\"n1_seconds\":%.3f,\"n8_seconds\":%.3f,\"n8_over_n1\":%.3f,"
                               "\"n8_peak_kv_blocks\":%.0f,\"independent_kv_blocks\":%d,"
                               "\"target_kv_blocks\":%d,\"kv_blocks_ratio\":%.3f}",
                               Median(g1), Median(g8), group_ratio, Median(blocks8),
                               independent_blocks, target_blocks,
                               Median(blocks8) / independent_blocks)
            << "}\n";
  return 0;
}
