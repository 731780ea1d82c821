// conclave-generate: generates text from a GGUF model on the CPU backend,
// streaming the completion to stdout and a one-line timing summary to stderr.
//
//   conclave-generate --model PATH --prompt TEXT [--chat] [--max-tokens N]
//       [--temperature T] [--top-p P] [--seed S] [--threads K] [--ignore-eos]
//       [--json] [--dump-logits FILE]
//
// --json prints one JSON object instead of the streamed text (prompt and
// generated token ids, text, timings); --dump-logits writes the first
// generated position's logits as raw little-endian float32 ([tokens, vocab];
// parity tests).
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
#include "engine/generator.h"
#include "engine/model/model.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tools/dash_flags.h"
#include "kernels/cpu/cpu_backend.h"

ABSL_FLAG(std::string, model, "", "path to a GGUF model file");
ABSL_FLAG(std::string, prompt, "", "prompt text (the user message with --chat)");
ABSL_FLAG(bool, chat, false, "wrap the prompt in the model's chat template");
ABSL_FLAG(std::string, system, "", "system message (with --chat)");
ABSL_FLAG(int, max_tokens, 128, "maximum tokens to generate");
ABSL_FLAG(double, temperature, 0.8, "sampling temperature; 0 is greedy");
ABSL_FLAG(double, top_p, 0.95, "nucleus sampling threshold in (0, 1]");
ABSL_FLAG(uint64_t, seed, 42, "sampling seed");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-generation tokens");
ABSL_FLAG(bool, json, false, "print one JSON object instead of streaming text");
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
  std::vector<int32_t> prompt = tok.Encode(text, add_special, /*parse_special=*/true);
  if (prompt.empty()) return Fail(absl::InvalidArgumentError("prompt encodes to no tokens"));
  const int context = (*model)->config().context_length;
  if (static_cast<int64_t>(prompt.size()) + absl::GetFlag(FLAGS_max_tokens) > context) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", prompt.size(), " tokens + max_tokens=", absl::GetFlag(FLAGS_max_tokens),
        " exceeds the model's context of ", context)));
  }

  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  conclave::kernels::cpu::CpuBackend backend(threads);
  if (absl::Status s = backend.LoadModel((*model)->config(), (*model)->weights()); !s.ok()) {
    return Fail(s);
  }

  conclave::engine::GenerateOptions options;
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  options.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  options.sampling.seed = absl::GetFlag(FLAGS_seed);
  options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  options.keep_all_logits = !absl::GetFlag(FLAGS_dump_logits).empty();
  options.is_end_of_generation = [&tok](int32_t id) { return tok.IsEndOfGeneration(id); };
  const bool json = absl::GetFlag(FLAGS_json);
  auto stream = [&](int32_t id) {
    if (!json && !tok.IsEndOfGeneration(id)) {
      const std::string piece = tok.TokenPiece(id);
      fwrite(piece.data(), 1, piece.size(), stdout);
      fflush(stdout);
    }
    return true;
  };
  absl::StatusOr<conclave::engine::GenerateResult> result = conclave::engine::Generate(
      backend, (*model)->config().vocab_size, prompt, options, stream);
  if (!result.ok()) return Fail(result.status());

  if (!absl::GetFlag(FLAGS_dump_logits).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_dump_logits), std::ios::binary);
    out.write(reinterpret_cast<const char*>(result->all_logits.data()),
              result->all_logits.size() * sizeof(float));
    if (!out) return Fail(absl::UnavailableError("cannot write --dump-logits file"));
  }
  const int generated = static_cast<int>(result->tokens.size());
  const double prefill_tps = prompt.size() / std::max(result->prefill_seconds, 1e-9);
  const double decode_tps = (generated - 1) / std::max(result->decode_seconds, 1e-9);
  if (json) {
    std::string completion = tok.Decode(result->tokens);
    std::cout << "{\"prompt_tokens\":[" << absl::StrJoin(prompt, ",") << "],\"tokens\":["
              << absl::StrJoin(result->tokens, ",") << "],\"text\":\"" << JsonEscape(completion)
              << "\",\"stopped_at_eos\":" << (result->stopped_at_eos ? "true" : "false")
              << absl::StrFormat(",\"prefill_seconds\":%.6f,\"decode_seconds\":%.6f",
                                 result->prefill_seconds, result->decode_seconds)
              << absl::StrFormat(",\"prefill_tokens_per_second\":%.3f", prefill_tps)
              << absl::StrFormat(",\"decode_tokens_per_second\":%.3f}", decode_tps) << "\n";
  } else {
    std::cout << "\n";
  }
  std::cerr << absl::StrFormat(
      "prompt_tokens=%d generated_tokens=%d prefill=%.1f tok/s decode=%.1f tok/s threads=%d\n",
      prompt.size(), generated, prefill_tps, generated > 1 ? decode_tps : 0.0, threads);
  return 0;
}
