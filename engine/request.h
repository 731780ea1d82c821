// What a caller hands the engine, and what it gets back on the request's
// stream. A request is one prompt sampled n times (a sequence group): the
// prompt is prefilled once and the n sequences share its KV blocks.
#ifndef CONCLAVE_ENGINE_REQUEST_H_
#define CONCLAVE_ENGINE_REQUEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling/sampler.h"

namespace conclave::engine {

struct EngineRequest {
  std::vector<int32_t> prompt;  // token ids, non-empty
  int n = 1;                    // sequences sampled from the prompt
  // One entry for every sequence (sequence i then draws with seed + i), or
  // exactly n entries (per-sequence temperature, seed, ...).
  std::vector<SamplingParams> sampling = {SamplingParams{}};
  int max_tokens = 256;  // generated tokens per sequence, >= 1
  std::vector<std::string> stop;          // stop strings (not emitted)
  std::vector<int32_t> stop_token_ids;    // extra stop tokens (not emitted)
  bool ignore_eos = false;  // keep going past the model's end-of-generation tokens
  uint64_t cache_salt = 0;  // prefix-cache tenant: blocks are shared only within a salt
  int confidence_window = 2048;  // tokens in the sliding mean of confidence
  // Part of a call whose first request already runs (the answer phase of
  // thinking, further agent groups, forced answers, aggregator passes).
  // Exempt from EngineConfig::max_queued_requests and max_queue_wait, so a
  // full queue never wastes work already admitted; still bounded by
  // SchedulerConfig::max_waiting_groups.
  bool continuation = false;
};

enum class FinishReason {
  kNone,        // still running
  kStopToken,   // an end-of-generation or stop token (not emitted as text)
  kStopString,  // a stop string (text before it is emitted)
  kLength,      // max_tokens, or the model's context
  kAborted,     // Abort / AbortSequence, or the stream was closed
  kError,       // the engine failed the request (see RequestUpdate::status)
};
const char* FinishReasonName(FinishReason reason);

struct TokenOutput {
  int32_t id = 0;
  float logprob = 0.0f;      // under the model's raw distribution
  float confidence = 0.0f;   // -mean of the top-k raw logprobs (DeepConf)
  std::vector<TokenLogprob> top;  // SamplingParams::logprobs alternatives
};

// New output of one sequence since the last update.
struct SequenceDelta {
  int index = 0;  // 0..n-1
  std::vector<TokenOutput> tokens;
  std::string text;  // UTF-8-safe text delta
  float window_confidence = 0.0f;  // sliding mean of confidence after these tokens
  FinishReason finish = FinishReason::kNone;
};

struct RequestUsage {
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens taken from the prefix cache
  int generated_tokens = 0;      // over all sequences
  // How long the request waited between Submit and the first step that ran
  // any of its tokens (or, if it never ran, until it ended). Zero until then.
  absl::Duration queue_time = absl::ZeroDuration();
};

// Everything that arrived since the caller last asked, in order.
struct RequestUpdate {
  std::vector<SequenceDelta> deltas;
  bool done = false;      // the last update of the request
  absl::Status status;    // non-OK when the request failed as a whole
  RequestUsage usage;     // totals so far
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_REQUEST_H_
