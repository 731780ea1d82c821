// Shared by the API request fuzz targets: the server limits they validate
// against, and the two ways an input becomes a request (wire format and the
// proto's JSON mapping).
#ifndef CONCLAVE_FUZZ_REQUEST_FUZZ_UTIL_H_
#define CONCLAVE_FUZZ_REQUEST_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "server/validation.h"

namespace conclave::fuzz {

// A broken property: a bug, reported to libFuzzer as a crash.
[[noreturn]] inline void Fail(std::string_view target, const std::string& what) {
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(target.size()), target.data(),
               what.c_str());
  std::abort();
}

// What the server is started with: the default model's limits, small ones,
// and the smallest the command line accepts (--max-prompt-tokens 1,
// --max-tokens-limit 1, --max-agents 1).
inline const std::vector<server::RequestLimits>& FuzzLimits() {
  static const auto* limits = new std::vector<server::RequestLimits>{
      {.model_id = "SmolLM2-135M-Instruct",
       .context_length = 8192,
       .vocab_size = 49152,
       .max_prompt_tokens = 8191,
       .max_tokens_limit = 8191,
       .max_agents = 8},
      {.model_id = "small",
       .context_length = 64,
       .vocab_size = 100,
       .max_prompt_tokens = 32,
       .max_tokens_limit = 2,
       .max_agents = 2},
      {.model_id = "m",
       .context_length = 64,
       .vocab_size = 1,
       .max_prompt_tokens = 1,
       .max_tokens_limit = 1,
       .max_agents = 1},
  };
  return *limits;
}

// Calls `fn(request)` with the input parsed as the wire format, then as JSON
// (each only when it parses).
template <typename Request, typename Fn>
void ForEachParsedRequest(const uint8_t* data, size_t size, Fn fn) {
  // The parser logs every string field with invalid UTF-8: quiet.
  [[maybe_unused]] static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  Request wire;
  if (wire.ParseFromArray(data, static_cast<int>(size))) fn(wire);
  Request json;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (google::protobuf::util::JsonStringToMessage(text, &json).ok()) fn(json);
}

}  // namespace conclave::fuzz

#endif  // CONCLAVE_FUZZ_REQUEST_FUZZ_UTIL_H_
