#include "engine/generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace conclave::engine {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(kernels::Backend& backend, int vocab_size,
                                        absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) return absl::InvalidArgumentError("prompt has no tokens");
  if (options.max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens=", options.max_tokens, " < 0"));
  }
  if (absl::Status s = ValidateSamplingParams(options.sampling); !s.ok()) return s;
  const int bs = options.block_size;
  const int64_t positions = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  const int num_blocks = static_cast<int>((positions + bs - 1) / bs);
  if (absl::Status s = backend.AllocateKvCache({num_blocks, bs, options.kv_dtype}); !s.ok()) return s;
  std::vector<int32_t> block_table(num_blocks);
  std::iota(block_table.begin(), block_table.end(), 0);

  GenerateResult result;
  std::vector<float> logits(vocab_size);
  Sampler sampler(options.sampling);
  const auto start = std::chrono::steady_clock::now();

  // Prefill in chunks; only the last chunk asks for logits.
  const int n_prompt = static_cast<int>(prompt.size());
  const int chunk = std::max(1, options.prefill_chunk);
  for (int begin = 0; begin < n_prompt; begin += chunk) {
    const int n = std::min(chunk, n_prompt - begin);
    kernels::StepBatch batch;
    batch.tokens = prompt.subspan(begin, n);
    batch.sequences.push_back({0, n, begin, block_table, begin + n == n_prompt});
    if (absl::Status s = backend.Forward(batch, absl::MakeSpan(logits)); !s.ok()) return s;
  }
  result.first_logits = logits;
  result.prefill_seconds = SecondsSince(start);

  const auto decode_start = std::chrono::steady_clock::now();
  int32_t token = 0;
  for (int i = 0; i < options.max_tokens; ++i) {
    if (i > 0) {
      kernels::StepBatch batch;
      batch.tokens = absl::MakeConstSpan(&token, 1);
      batch.sequences.push_back({0, 1, n_prompt + i - 1, block_table, true});
      if (absl::Status s = backend.Forward(batch, absl::MakeSpan(logits)); !s.ok()) return s;
    }
    if (options.keep_all_logits) {
      result.all_logits.insert(result.all_logits.end(), logits.begin(), logits.end());
    }
    token = sampler.Sample(logits, prompt, result.tokens).token;
    result.tokens.push_back(token);
    if (on_token && !on_token(token)) break;
    if (!options.ignore_eos && options.is_end_of_generation &&
        options.is_end_of_generation(token)) {
      result.stopped_at_eos = true;
      break;
    }
  }
  result.decode_seconds = SecondsSince(decode_start);
  return result;
}

}  // namespace conclave::engine
