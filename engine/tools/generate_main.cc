// conclave-generate: generates text from a GGUF model on the CPU backend,
// streaming the completion to stdout and a one-line timing summary to stderr.
//
//   conclave-generate --model PATH (--prompt TEXT | --prompt-ids 1,2,3) [--chat] [--max-tokens N]
//       [--temperature T] [--top-p P] [--top-k K] [--min-p P] [--seed S]
//       [--n N] [--threads K] [--ignore-eos] [--json] [--dump-logits FILE]
//       [--kv-dtype fp16|bf16]
//
// Runs on the batched engine: --n N samples the prompt N times as one
// sequence group (the prompt is prefilled once; sequence i draws with seed
// + i); with N > 1 the text of each sequence is printed when it finishes.
// --json prints one JSON object instead (prompt ids; per sequence its ids,
// text and finish reason; timings; KV blocks used and prefix-cache hits).
// --dump-logits runs the single-sequence generator instead and writes the
// logits of every generated position as raw little-endian float32
// ([tokens, vocab]; parity tests).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "engine/model/model.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tools/dash_flags.h"
#include "kernels/cpu/cpu_backend.h"

ABSL_FLAG(std::string, model, "", "path to a GGUF model file");
ABSL_FLAG(std::string, prompt, "", "prompt text (the user message with --chat)");
ABSL_FLAG(std::string, prompt_ids, "",
          "prompt as comma-separated token ids instead of --prompt (benchmarks)");
ABSL_FLAG(bool, chat, false, "wrap the prompt in the model's chat template");
ABSL_FLAG(std::string, system, "", "system message (with --chat)");
ABSL_FLAG(int, max_tokens, 128, "maximum tokens to generate");
ABSL_FLAG(double, temperature, 0.8, "sampling temperature; 0 is greedy");
ABSL_FLAG(double, top_p, 0.95, "nucleus sampling threshold in (0, 1]");
ABSL_FLAG(int, top_k, 0, "keep the k most likely tokens (0: off)");
ABSL_FLAG(double, min_p, 0.0, "drop tokens below min_p times the most likely one's probability");
ABSL_FLAG(int, n, 1, "sequences sampled from the prompt (one group sharing its KV blocks)");
ABSL_FLAG(uint64_t, seed, 42, "sampling seed");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-generation tokens");
ABSL_FLAG(bool, json, false, "print one JSON object instead of streaming text");
ABSL_FLAG(std::string, kv_dtype, "fp16",
          "KV cache element type: fp16 (bit-identical to llama.cpp) or bf16");
ABSL_FLAG(std::string, dump_logits, "",
          "write the logits of every generated position (float32, [tokens, vocab]) here");

namespace {

using conclave::engine::ChatMessage;
using conclave::engine::Model;

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

int Fail(const absl::Status& s) {
  std::cerr << "conclave-generate: " << s << "\n";
  return 1;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The single-sequence generator path, for the parity tests: greedy or
// sampled tokens with the logits of every generated position written to
// --dump-logits, and the usual JSON / timing line.
int DumpLogits(conclave::kernels::Backend& backend, const Model& model,
               const std::vector<int32_t>& prompt,
               const conclave::engine::SamplingParams& sampling, int threads,
               conclave::kernels::KvDtype kv_dtype) {
  const conclave::engine::Tokenizer& tok = model.tokenizer();
  conclave::engine::GenerateOptions options;
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.sampling = sampling;
  options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  options.keep_all_logits = true;
  options.kv_dtype = kv_dtype;
  options.is_end_of_generation = [&tok](int32_t id) { return tok.IsEndOfGeneration(id); };
  absl::StatusOr<conclave::engine::GenerateResult> result = conclave::engine::Generate(
      backend, model.config().vocab_size, prompt, options);
  if (!result.ok()) return Fail(result.status());
  std::ofstream out(absl::GetFlag(FLAGS_dump_logits), std::ios::binary);
  out.write(reinterpret_cast<const char*>(result->all_logits.data()),
            result->all_logits.size() * sizeof(float));
  if (!out) return Fail(absl::UnavailableError("cannot write --dump-logits file"));
  const int generated = static_cast<int>(result->tokens.size());
  const double prefill_tps = prompt.size() / std::max(result->prefill_seconds, 1e-9);
  const double decode_tps = (generated - 1) / std::max(result->decode_seconds, 1e-9);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"prompt_tokens\":[" << absl::StrJoin(prompt, ",") << "],\"tokens\":["
              << absl::StrJoin(result->tokens, ",") << "],\"text\":\""
              << JsonEscape(tok.Decode(result->tokens)) << "\",\"stopped_at_eos\":"
              << (result->stopped_at_eos ? "true" : "false")
              << absl::StrFormat(",\"prefill_seconds\":%.6f,\"decode_seconds\":%.6f",
                                 result->prefill_seconds, result->decode_seconds)
              << absl::StrFormat(",\"prefill_tokens_per_second\":%.3f", prefill_tps)
              << absl::StrFormat(",\"decode_tokens_per_second\":%.3f}", decode_tps) << "\n";
  }
  std::cerr << absl::StrFormat(
      "prompt_tokens=%d generated_tokens=%d prefill=%.1f tok/s decode=%.1f tok/s threads=%d\n",
      prompt.size(), generated, prefill_tps, generated > 1 ? decode_tps : 0.0, threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("conclave-generate --model PATH --prompt TEXT [options]");
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  absl::ParseCommandLine(argc, argv);
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) return Fail(absl::InvalidArgumentError("--model is required"));

  absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(model_path);
  if (!model.ok()) return Fail(model.status());
  const conclave::engine::Tokenizer& tok = (*model)->tokenizer();

  std::string text = absl::GetFlag(FLAGS_prompt);
  bool add_special = true;
  if (absl::GetFlag(FLAGS_chat)) {
    std::vector<ChatMessage> messages;
    if (!absl::GetFlag(FLAGS_system).empty()) {
      messages.push_back({"system", absl::GetFlag(FLAGS_system)});
    }
    messages.push_back({"user", text});
    absl::StatusOr<conclave::engine::ChatFormat> format =
        conclave::engine::DetectChatFormat((*model)->file());
    if (!format.ok()) return Fail(format.status());
    absl::StatusOr<std::string> rendered = conclave::engine::ApplyChatTemplate(
        *format, messages, /*add_generation_prompt=*/true);
    if (!rendered.ok()) return Fail(rendered.status());
    text = *rendered;
    add_special = false;  // the template writes its own BOS where needed
  }
  std::vector<int32_t> prompt;
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',')) {
      int32_t id = 0;
      if (!absl::SimpleAtoi(part, &id) || id < 0 || id >= tok.vocab_size()) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--prompt-ids: \"", part, "\" is not a token id below ", tok.vocab_size())));
      }
      prompt.push_back(id);
    }
  } else {
    prompt = tok.Encode(text, add_special, /*parse_special=*/true);
  }
  if (prompt.empty()) return Fail(absl::InvalidArgumentError("prompt encodes to no tokens"));
  const int context = (*model)->config().context_length;
  if (static_cast<int64_t>(prompt.size()) + absl::GetFlag(FLAGS_max_tokens) > context) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", prompt.size(), " tokens + max_tokens=", absl::GetFlag(FLAGS_max_tokens),
        " exceeds the model's context of ", context)));
  }

  const absl::StatusOr<conclave::kernels::KvDtype> kv_dtype =
      conclave::kernels::ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) return Fail(kv_dtype.status());
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  conclave::kernels::cpu::CpuBackend backend(threads);
  if (absl::Status s = backend.LoadModel((*model)->config(), (*model)->weights()); !s.ok()) {
    return Fail(s);
  }

  conclave::engine::SamplingParams sampling;
  sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  sampling.top_k = absl::GetFlag(FLAGS_top_k);
  sampling.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
  sampling.seed = absl::GetFlag(FLAGS_seed);
  const bool json = absl::GetFlag(FLAGS_json);
  const int n = absl::GetFlag(FLAGS_n);
  if (!absl::GetFlag(FLAGS_dump_logits).empty()) {
    return DumpLogits(backend, **model, prompt, sampling, threads, *kv_dtype);
  }

  // The KV pool: room for the whole group, capped at 1 GiB.
  conclave::engine::EngineConfig config;
  config.kv_dtype = *kv_dtype;
  const int64_t positions = static_cast<int64_t>(prompt.size()) + absl::GetFlag(FLAGS_max_tokens);
  const int64_t per_block = backend.KvBytesPerBlock();
  config.kv_cache_bytes = std::min<int64_t>(
      1ll << 30, (positions / config.block_size + 2) * std::max(n, 1) * per_block);
  config.max_sequences_per_request = std::max(n, 1);
  config.scheduler.max_running_sequences = std::max(n, 1);
  absl::StatusOr<std::unique_ptr<conclave::engine::Engine>> engine =
      conclave::engine::Engine::Create(backend, (*model)->config(), tok, config);
  if (!engine.ok()) return Fail(engine.status());

  conclave::engine::EngineRequest request;
  request.prompt = prompt;
  request.n = n;
  request.sampling = {sampling};
  request.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  request.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::shared_ptr<conclave::engine::RequestStream>> stream =
      (*engine)->Submit(std::move(request));
  if (!stream.ok()) return Fail(stream.status());

  struct Output {
    std::vector<int32_t> tokens;
    std::string text;
    conclave::engine::FinishReason finish = conclave::engine::FinishReason::kNone;
  };
  std::vector<Output> outputs(std::max(n, 1));
  double first_token_seconds = 0;
  int peak_blocks = 0;
  conclave::engine::RequestUpdate update;
  conclave::engine::RequestUsage usage;
  while ((*stream)->Next(update) == conclave::engine::RequestStream::Poll::kUpdate) {
    peak_blocks = std::max(peak_blocks, (*engine)->stats().kv.used_blocks);
    for (conclave::engine::SequenceDelta& d : update.deltas) {
      Output& o = outputs[d.index];
      if (!d.tokens.empty() && first_token_seconds == 0) {
        first_token_seconds = SecondsSince(start);
      }
      for (const auto& t : d.tokens) o.tokens.push_back(t.id);
      o.text += d.text;
      if (d.finish != conclave::engine::FinishReason::kNone) o.finish = d.finish;
      if (!json && n == 1) {
        fwrite(d.text.data(), 1, d.text.size(), stdout);
        fflush(stdout);
      } else if (!json && d.finish != conclave::engine::FinishReason::kNone) {
        std::cout << "--- sequence " << d.index << " ("
                  << conclave::engine::FinishReasonName(d.finish) << ") ---\n"
                  << o.text << "\n";
      }
    }
    usage = update.usage;
    if (update.done) {
      if (!update.status.ok()) return Fail(update.status);
      break;
    }
  }
  const double total_seconds = SecondsSince(start);
  const conclave::engine::EngineStats stats = (*engine)->stats();
  const double decode_seconds = std::max(total_seconds - first_token_seconds, 1e-9);
  const double prefill_tps = prompt.size() / std::max(first_token_seconds, 1e-9);
  const double decode_tps = (usage.generated_tokens - n) / decode_seconds;
  if (json) {
    std::vector<std::string> seqs;
    for (const Output& o : outputs) {
      seqs.push_back(absl::StrCat("{\"tokens\":[", absl::StrJoin(o.tokens, ","),
                                  "],\"text\":\"", JsonEscape(o.text), "\",\"finish_reason\":\"",
                                  conclave::engine::FinishReasonName(o.finish), "\"}"));
    }
    // The first sequence's fields stay at the top level (n = 1 callers).
    std::cout << "{\"prompt_tokens\":[" << absl::StrJoin(prompt, ",") << "],\"tokens\":["
              << absl::StrJoin(outputs[0].tokens, ",") << "],\"text\":\""
              << JsonEscape(outputs[0].text) << "\",\"stopped_at_eos\":"
              << (outputs[0].finish == conclave::engine::FinishReason::kStopToken ? "true" : "false")
              << ",\"sequences\":[" << absl::StrJoin(seqs, ",") << "]"
              << absl::StrFormat(",\"prefill_seconds\":%.6f,\"decode_seconds\":%.6f",
                                 first_token_seconds, decode_seconds)
              << absl::StrFormat(",\"prefill_tokens_per_second\":%.3f", prefill_tps)
              << absl::StrFormat(",\"decode_tokens_per_second\":%.3f", decode_tps)
              << absl::StrFormat(",\"generated_tokens\":%d", usage.generated_tokens)
              << absl::StrFormat(",\"kv_blocks_used\":%d,\"kv_block_size\":%d", peak_blocks,
                                 config.block_size)
              << absl::StrFormat(",\"prefix_cache_hit_tokens\":%d", usage.cached_prompt_tokens)
              << absl::StrFormat(",\"prefix_cache_block_hits\":%d}", stats.kv.prefix_hits)
              << "\n";
  } else if (n == 1) {
    std::cout << "\n";
  }
  std::cerr << absl::StrFormat(
      "prompt_tokens=%d generated_tokens=%d prefill=%.1f tok/s decode=%.1f tok/s threads=%d "
      "n=%d kv_blocks=%d\n",
      prompt.size(), usage.generated_tokens, prefill_tps,
      usage.generated_tokens > n ? decode_tps : 0.0, threads, n, peak_blocks);
  return 0;
}
