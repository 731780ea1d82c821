// Fuzzes the HTTP endpoint's POST /v1/chat/completions body:
// ParseChatCompletionRequest (server/http/chat_completions.h) on any bytes,
// under each of FuzzLimits(), must return a request or a status, never
// throw. A refusal is INVALID_ARGUMENT or NOT_FOUND, becomes an OpenAI
// error (ToHttpError: 400 or 404; ErrorBody is JSON) and never quotes a
// message's content. An accepted request is an instant-mode plan the engine
// accepts (a Sampler is built from it, its stop strings pass
// ValidateStopStrings), with messages, 1 <= n <= max_agents, and
// ResolveTokenBudget returns a status for prompts of several lengths.
// DumpJson of the body as a JSON string must not throw and must parse back.
// Seeds: corpus/chat_request_fuzz/ (fuzz/make_corpus.py); dictionary:
// chat_request_fuzz.dict.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/stop_checker.h"
#include "fuzz/request_fuzz_util.h"
#include "nlohmann/json.hpp"
#include "server/http/chat_completions.h"
#include "server/http/http_response.h"
#include "server/validation.h"

namespace {

using conclave::fuzz::Fail;
using conclave::server::RequestLimits;
namespace http = conclave::server::http;

constexpr char kTarget[] = "chat_request_fuzz";
// Contents this long are distinctive enough to look for in error messages.
constexpr size_t kQuotableContent = 16;

// The long string contents of the body's messages, when it is JSON.
std::vector<std::string> MessageContents(std::string_view body) {
  std::vector<std::string> out;
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array()) return out;
  for (const nlohmann::json& m : j["messages"]) {
    if (m.is_object() && m.contains("content") && m["content"].is_string()) {
      std::string content = m["content"].get<std::string>();
      if (content.size() >= kQuotableContent) out.push_back(std::move(content));
    }
  }
  return out;
}

void CheckRefusal(const absl::Status& status, std::string_view body) {
  if (status.code() != absl::StatusCode::kInvalidArgument &&
      status.code() != absl::StatusCode::kNotFound) {
    Fail(kTarget, absl::StrCat("refused with ", status.ToString(),
                               ", not INVALID_ARGUMENT or NOT_FOUND"));
  }
  const http::HttpError error = http::ToHttpError(status);
  if (error.status != 400 && error.status != 404) {
    Fail(kTarget, absl::StrCat("HTTP status ", error.status, " for ", status.ToString()));
  }
  const nlohmann::json parsed =
      nlohmann::json::parse(http::ErrorBody(error), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.contains("error")) Fail(kTarget, "ErrorBody is not JSON");
  for (const std::string& content : MessageContents(body)) {
    if (status.message().find(content) != absl::string_view::npos) {
      Fail(kTarget, "an error message quotes a message's content");
    }
  }
}

void CheckAccepted(const http::ChatRequest& request, const RequestLimits& limits) {
  const conclave::server::GeneratePlan& plan = request.plan;
  if (plan.mode != conclave::server::GenerateMode::kInstant) Fail(kTarget, "not instant mode");
  if (plan.raw_prompt.has_value() || plan.messages.empty()) {
    Fail(kTarget, "accepted without messages");
  }
  if (plan.n < 1 || plan.n > limits.max_agents) {
    Fail(kTarget, absl::StrCat("n=", plan.n, " outside [1, max_agents]"));
  }
  conclave::engine::Sampler sampler(plan.sampling);  // CHECKs the engine's validation
  if (absl::Status s = conclave::engine::ValidateStopStrings(plan.stop); !s.ok()) {
    Fail(kTarget, absl::StrCat("accepted stop strings the engine rejects: ", s.message()));
  }
  for (int prompt_tokens : {1, limits.context_length / 2, limits.context_length}) {
    (void)conclave::server::ResolveTokenBudget(plan, prompt_tokens, limits);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const RequestLimits& limits : conclave::fuzz::FuzzLimits()) {
    absl::StatusOr<http::ChatRequest> request =
        http::ParseChatCompletionRequest(absl::string_view(body.data(), body.size()), limits);
    if (request.ok()) {
      CheckAccepted(*request, limits);
    } else {
      CheckRefusal(request.status(), body);
    }
  }
  const std::string dumped = http::DumpJson(nlohmann::json(std::string(body)));
  if (nlohmann::json::parse(dumped, nullptr, /*allow_exceptions=*/false).is_discarded()) {
    Fail(kTarget, "DumpJson wrote text that is not JSON");
  }
  return 0;
}
