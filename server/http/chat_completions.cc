#include "server/http/chat_completions.h"

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "conclave/v1/conclave.pb.h"
#include "engine/sampling/sampler.h"
#include "server/http/http_response.h"
#include "server/http/json_body.h"

namespace conclave::server::http {
namespace {

// Requests are read as nlohmann::json; responses are written as
// ordered_json, so that their fields keep OpenAI's order.
using Json = nlohmann::json;
using OutJson = nlohmann::ordered_json;

// OpenAI's defaults for absent fields (its API reference).
constexpr double kOpenAiTemperature = 1.0;
constexpr double kOpenAiTopP = 1.0;

// Fields OpenAI defines that change nothing here, so they are accepted and
// ignored (docs/http.md).
constexpr absl::string_view kIgnoredFields[] = {
    "user",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
};

absl::Status Invalid(absl::string_view param, auto&&... parts) {
  return InvalidField(param, absl::StrCat(parts...));
}

// Why a field OpenAI defines is refused: conclave does not implement it.
absl::Status Unsupported(absl::string_view param, absl::string_view what) {
  return Invalid(param, param, " is not supported by this server (", what, ")");
}

// A JSON value's type for messages ("a string", "an array", ...).
std::string TypeOf(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return v.type_name();
  }
}

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& v) {
  return Invalid(param, param, " must be ", expected, ", not ", TypeOf(v));
}

// The value of `key` in `object`, or null when it is absent (OpenAI treats
// an explicit null as absent).
const Json& Field(const Json& object, absl::string_view key) {
  static const Json kNull;
  const auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

absl::StatusOr<std::optional<double>> Number(const Json& object, absl::string_view key) {
  const Json& v = Field(object, key);
  if (v.is_null()) return std::nullopt;
  if (!v.is_number()) return WrongType(key, "a number", v);
  return v.get<double>();
}

absl::StatusOr<std::optional<int64_t>> Integer(const Json& object, absl::string_view key) {
  const Json& v = Field(object, key);
  if (v.is_null()) return std::nullopt;
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(key, key, " is too large");
    }
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (!v.is_number_integer()) return WrongType(key, "an integer", v);
  return v.get<int64_t>();
}

absl::StatusOr<std::optional<bool>> Boolean(const Json& object, absl::string_view key) {
  const Json& v = Field(object, key);
  if (v.is_null()) return std::nullopt;
  if (!v.is_boolean()) return WrongType(key, "a boolean", v);
  return v.get<bool>();
}

// lo <= x <= hi, false for NaN.
bool InClosed(double x, double lo, double hi) { return x >= lo && x <= hi; }

// One message's content: a string, or an array of {"type": "text", "text"}
// parts joined with newlines. Null only for an assistant message.
absl::StatusOr<std::string> MessageContent(const Json& message, const std::string& at,
                                           const std::string& role) {
  const std::string param = absl::StrCat(at, ".content");
  const Json& content = Field(message, "content");
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) {
    if (role == "assistant") return std::string();
    return Invalid(param, param, " is required (a string or an array of text parts)");
  }
  if (!content.is_array()) return WrongType(param, "a string or an array of text parts", content);
  std::vector<std::string> texts;
  for (size_t j = 0; j < content.size(); ++j) {
    const Json& part = content[j];
    const std::string at_part = absl::StrCat(param, "[", j, "]");
    if (!part.is_object()) return WrongType(at_part, "an object", part);
    const Json& type = Field(part, "type");
    if (!type.is_string()) return WrongType(at_part + ".type", "a string", type);
    if (type.get<std::string>() != "text") {
      const std::string name = type.get<std::string>();
      return Invalid(at_part + ".type", at_part, ".type ",
                     name.size() <= 32 ? absl::StrCat("\"", name, "\"") : "(long)",
                     " is not supported; this server reads text parts only");
    }
    const Json& text = Field(part, "text");
    if (!text.is_string()) return WrongType(at_part + ".text", "a string", text);
    texts.push_back(text.get<std::string>());
  }
  return absl::StrJoin(texts, "\n");
}

// messages -> the proto's ChatMessage list (role_name and content).
absl::Status ParseMessages(const Json& body, v1::GenerateRequest& request) {
  const Json& messages = Field(body, "messages");
  if (messages.is_null()) return Invalid("messages", "messages is required");
  if (!messages.is_array()) return WrongType("messages", "an array", messages);
  if (messages.empty()) {
    return Invalid("messages", "messages is empty; give at least one message");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return WrongType(at, "an object", m);
    const Json& role = Field(m, "role");
    if (!role.is_string()) return WrongType(at + ".role", "a string", role);
    std::string name = role.get<std::string>();
    if (name == "developer") name = "system";  // OpenAI's newer name for it
    if (name == "tool" || name == "function") {
      return Unsupported(at + ".role", "tools and functions are not implemented");
    }
    if (name != "system" && name != "user" && name != "assistant") {
      return Invalid(at + ".role", at, ".role ",
                     name.size() <= 32 ? absl::StrCat("\"", name, "\"") : "(long)",
                     " must be system, developer, user or assistant");
    }
    for (const auto& [key, value] : m.items()) {
      if (key == "role" || key == "content" || key == "name") continue;  // name: ignored
      if (key == "refusal" && name == "assistant") continue;  // an earlier reply's; ignored
      const std::string param = absl::StrCat(at, ".", key);
      if (key == "tool_calls" || key == "function_call" || key == "tool_call_id" ||
          key == "audio") {
        if (value.is_null()) continue;
        return Unsupported(param, "tools, functions and audio are not implemented");
      }
      return Invalid(param, "unrecognized field ", param.size() <= 64 ? param : "(long name)");
    }
    absl::StatusOr<std::string> content = MessageContent(m, at, name);
    if (!content.ok()) return content.status();
    v1::ChatMessage* out = request.add_messages();
    out->set_role_name(name);
    out->set_content(*std::move(content));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const Json& body, v1::GenerateRequest& request) {
  const Json& stop = Field(body, "stop");
  if (stop.is_null()) return absl::OkStatus();
  if (stop.is_string()) {
    request.add_stop(stop.get<std::string>());
    return absl::OkStatus();
  }
  if (!stop.is_array()) return WrongType("stop", "a string or an array of strings", stop);
  for (size_t i = 0; i < stop.size(); ++i) {
    if (!stop[i].is_string()) return WrongType(absl::StrCat("stop[", i, "]"), "a string", stop[i]);
    request.add_stop(stop[i].get<std::string>());
  }
  return absl::OkStatus();
}

// Top-level fields OpenAI defines that conclave refuses, unless they ask
// for what conclave does anyway (tool_choice "none", response_format text,
// modalities ["text"], an empty logit_bias, store false).
absl::Status CheckUnimplemented(absl::string_view key, const Json& v) {
  if (v.is_null()) return absl::OkStatus();
  if (key == "tools" || key == "functions") {
    if (v.is_array() && v.empty()) return absl::OkStatus();
    return Unsupported(key, "tools and functions are not implemented");
  }
  if (key == "tool_choice" || key == "function_call") {
    if (v.is_string() && v.get<std::string>() == "none") return absl::OkStatus();
    return Unsupported(key, "tools and functions are not implemented; only \"none\"");
  }
  if (key == "response_format") {
    if (v.is_object() && Field(v, "type").is_string() && Field(v, "type") == "text" &&
        v.size() == 1) {
      return absl::OkStatus();
    }
    return Unsupported(key, "structured output is not implemented; only {\"type\": \"text\"}");
  }
  if (key == "logit_bias") {
    if (v.is_object() && v.empty()) return absl::OkStatus();
    return Unsupported(key, "logit biases are not implemented");
  }
  if (key == "modalities") {
    if (v.is_array() && v.size() == 1 && v[0] == "text") return absl::OkStatus();
    return Unsupported(key, "text is the only modality");
  }
  if (key == "store") {
    if (v.is_boolean() && !v.get<bool>()) return absl::OkStatus();
    return Unsupported(key, "completions are not stored");
  }
  if (key == "audio" || key == "prediction" || key == "web_search_options" ||
      key == "reasoning_effort" || key == "verbosity") {
    return Unsupported(key, "not implemented");
  }
  return Invalid(key, "unrecognized request argument supplied: ",
                 key.size() <= 64 ? key : absl::string_view("(long name)"));
}

bool IsKnownField(absl::string_view key) {
  constexpr absl::string_view kSupported[] = {
      "model",       "messages", "stream",       "stream_options",        "n",
      "temperature", "top_p",    "max_tokens",   "max_completion_tokens", "stop",
      "seed",        "logprobs", "top_logprobs", "presence_penalty",      "frequency_penalty",
  };
  for (absl::string_view k : kSupported) {
    if (key == k) return true;
  }
  for (absl::string_view k : kIgnoredFields) {
    if (key == k) return true;
  }
  return false;
}

// The request field a ValidateGenerateRequest message is about.
std::string ParamOfValidation(absl::string_view message) {
  if (absl::StartsWith(message, "sampling.")) {
    const absl::string_view rest = message.substr(9);
    return std::string(rest.substr(0, rest.find_first_of("=. ")));
  }
  if (absl::StartsWith(message, "messages")) return "messages";
  if (absl::StartsWith(message, "max_tokens")) return "max_tokens";
  if (absl::StrContains(message, "stop")) return "stop";
  return "";
}

}  // namespace

absl::StatusOr<ChatRequest> ParseChatCompletionRequest(absl::string_view body,
                                                       const RequestLimits& limits) {
  absl::StatusOr<Json> parsed = ParseJsonObject(body, kMaxJsonDepth);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;

  for (const auto& [key, value] : j.items()) {
    if (IsKnownField(key)) continue;
    if (absl::Status s = CheckUnimplemented(key, value); !s.ok()) return s;
  }

  v1::GenerateRequest request;
  request.set_mode(v1::MODE_INSTANT);
  const Json& model = Field(j, "model");
  if (!model.is_null()) {
    if (!model.is_string()) return WrongType("model", "a string", model);
    const std::string id = model.get<std::string>();
    if (!id.empty() && id != limits.model_id) {
      const std::string shown = id.size() <= 128 ? absl::StrCat("\"", id, "\"") : "(long)";
      return WithErrorCode(
          WithParam(absl::NotFoundError(absl::StrCat("The model ", shown,
                                                     " does not exist; this server serves \"",
                                                     limits.model_id, "\" (GET /v1/models)")),
                    "model"),
          "model_not_found");
    }
  }
  if (absl::Status s = ParseMessages(j, request); !s.ok()) return s;

  ChatRequest out;
  v1::SamplingParams* sampling = request.mutable_sampling();
  absl::StatusOr<std::optional<double>> temperature = Number(j, "temperature");
  if (!temperature.ok()) return temperature.status();
  const double t = temperature->value_or(kOpenAiTemperature);
  if (!InClosed(t, 0.0, 2.0))
    return Invalid("temperature", "temperature=", t, " must be in [0, 2]");
  sampling->set_temperature(static_cast<float>(t));

  absl::StatusOr<std::optional<double>> top_p = Number(j, "top_p");
  if (!top_p.ok()) return top_p.status();
  const double p = top_p->value_or(kOpenAiTopP);
  if (!(p > 0.0 && p <= 1.0)) return Invalid("top_p", "top_p=", p, " must be in (0, 1]");
  sampling->set_top_p(static_cast<float>(p));

  for (absl::string_view key : {"presence_penalty", "frequency_penalty"}) {
    absl::StatusOr<std::optional<double>> penalty = Number(j, key);
    if (!penalty.ok()) return penalty.status();
    if (!penalty->has_value()) continue;
    if (!InClosed(**penalty, -2.0, 2.0)) {
      return Invalid(key, key, "=", **penalty, " must be in [-2, 2]");
    }
    if (key == "presence_penalty") {
      sampling->set_presence_penalty(static_cast<float>(**penalty));
    } else {
      sampling->set_frequency_penalty(static_cast<float>(**penalty));
    }
  }

  const Json& seed = Field(j, "seed");
  if (!seed.is_null()) {
    // OpenAI's seed is a signed 64-bit integer; the engine's an unsigned
    // one: negative seeds wrap, so each still names one generator.
    if (seed.is_number_unsigned()) {
      sampling->set_seed(seed.get<uint64_t>());
    } else if (seed.is_number_integer()) {
      sampling->set_seed(static_cast<uint64_t>(seed.get<int64_t>()));
    } else {
      return WrongType("seed", "an integer", seed);
    }
  }

  absl::StatusOr<std::optional<bool>> logprobs = Boolean(j, "logprobs");
  if (!logprobs.ok()) return logprobs.status();
  out.logprobs = logprobs->value_or(false);
  absl::StatusOr<std::optional<int64_t>> top_logprobs = Integer(j, "top_logprobs");
  if (!top_logprobs.ok()) return top_logprobs.status();
  if (top_logprobs->has_value()) {
    if (!out.logprobs) {
      return Invalid("top_logprobs", "top_logprobs needs logprobs=true");
    }
    if (**top_logprobs < 0 || **top_logprobs > engine::kMaxLogprobs) {
      return Invalid("top_logprobs", "top_logprobs=", **top_logprobs, " must be in [0, ",
                     engine::kMaxLogprobs, "]");
    }
    sampling->set_logprobs(static_cast<int>(**top_logprobs));
  }

  absl::StatusOr<std::optional<int64_t>> max_tokens = Integer(j, "max_tokens");
  if (!max_tokens.ok()) return max_tokens.status();
  absl::StatusOr<std::optional<int64_t>> max_completion = Integer(j, "max_completion_tokens");
  if (!max_completion.ok()) return max_completion.status();
  if (max_tokens->has_value() && max_completion->has_value() && **max_tokens != **max_completion) {
    return Invalid("max_tokens", "max_tokens=", **max_tokens,
                   " and max_completion_tokens=", **max_completion, " disagree; give one of them");
  }
  const std::optional<int64_t> most = max_completion->has_value() ? *max_completion : *max_tokens;
  const char* most_name = max_completion->has_value() ? "max_completion_tokens" : "max_tokens";
  if (most.has_value()) {
    if (*most < 1 || *most > limits.max_tokens_limit) {
      return Invalid(most_name, most_name, "=", *most, " must be in [1, ", limits.max_tokens_limit,
                     "] (the server's --max-tokens-limit)");
    }
    request.set_max_tokens(static_cast<int>(*most));
  }

  absl::StatusOr<std::optional<int64_t>> n = Integer(j, "n");
  if (!n.ok()) return n.status();
  const int64_t choices = n->value_or(1);
  if (choices < 1 || choices > limits.max_agents) {
    return Invalid("n", "n=", choices, " must be in [1, ", limits.max_agents,
                   "] (the server's --max-agents)");
  }

  absl::StatusOr<std::optional<bool>> stream = Boolean(j, "stream");
  if (!stream.ok()) return stream.status();
  out.stream = stream->value_or(false);
  const Json& stream_options = Field(j, "stream_options");
  if (!stream_options.is_null()) {
    if (!out.stream) {
      return Invalid("stream_options", "stream_options is only allowed with stream=true");
    }
    if (!stream_options.is_object()) {
      return WrongType("stream_options", "an object", stream_options);
    }
    for (const auto& [key, value] : stream_options.items()) {
      const std::string param = absl::StrCat("stream_options.", key);
      if (key == "include_usage") {
        if (!value.is_boolean()) return WrongType(param, "a boolean", value);
        out.include_usage = value.get<bool>();
      } else if (key != "include_obfuscation") {  // no obfuscation padding: ignored
        return Invalid(param, "unrecognized field ", param.size() <= 80 ? param : "(long name)");
      }
    }
  }

  if (absl::Status s = ParseStop(j, request); !s.ok()) return s;

  // The gRPC API's own validation, so that nothing it would refuse gets
  // past here (stop strings' count and lengths, the engine's sampling
  // checks, UTF-8 of every message).
  absl::StatusOr<GeneratePlan> plan = ValidateGenerateRequest(request, limits);
  if (!plan.ok()) {
    const std::string param = ParamOfValidation(plan.status().message());
    return param.empty() ? plan.status() : WithParam(plan.status(), param);
  }
  out.plan = *std::move(plan);
  out.plan.n = static_cast<int>(choices);
  return out;
}

nlohmann::ordered_json FinishReasonJson(engine::FinishReason finish) {
  switch (finish) {
    case engine::FinishReason::kStopToken:
    case engine::FinishReason::kStopString: return "stop";
    case engine::FinishReason::kLength: return "length";
    default: return nullptr;
  }
}

nlohmann::ordered_json UsageJson(const engine::RequestUsage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.generated_tokens},
          {"total_tokens", usage.prompt_tokens + usage.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}}};
}

namespace {

// "token", "logprob" and "bytes" of one token.
OutJson TokenJson(int32_t id, float logprob, TokenPiece piece) {
  const std::string text = piece(id);
  OutJson bytes = OutJson::array();
  for (char c : text) bytes.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  // An infinite logprob (a token of probability 0) has no JSON number.
  const OutJson value = std::isfinite(logprob) ? OutJson(logprob) : OutJson(-9999.0);
  return {{"token", text}, {"logprob", value}, {"bytes", std::move(bytes)}};
}

}  // namespace

nlohmann::ordered_json LogprobsJson(absl::Span<const engine::TokenOutput> tokens,
                                    TokenPiece piece) {
  OutJson content = OutJson::array();
  for (const engine::TokenOutput& t : tokens) {
    OutJson entry = TokenJson(t.id, t.logprob, piece);
    OutJson top = OutJson::array();
    for (const engine::TokenLogprob& alt : t.top)
      top.push_back(TokenJson(alt.token, alt.logprob, piece));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

nlohmann::ordered_json ChatCompletionJson(const ChatMeta& meta,
                                          absl::Span<const ChatChoice> choices,
                                          const engine::RequestUsage& usage, bool logprobs,
                                          TokenPiece piece) {
  OutJson out_choices = OutJson::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChatChoice& c = choices[i];
    out_choices.push_back(
        {{"index", i},
         {"message", {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}}},
         {"logprobs", logprobs ? LogprobsJson(c.tokens, piece) : OutJson(nullptr)},
         {"finish_reason", FinishReasonJson(c.finish)}});
  }
  return {{"id", meta.id},       {"object", "chat.completion"},       {"created", meta.created},
          {"model", meta.model}, {"choices", std::move(out_choices)}, {"usage", UsageJson(usage)}};
}

nlohmann::ordered_json ChatChunkJson(const ChatMeta& meta, int index, nlohmann::ordered_json delta,
                                     nlohmann::ordered_json logprobs,
                                     nlohmann::ordered_json finish_reason, bool include_usage) {
  OutJson chunk = {{"id", meta.id},
                   {"object", "chat.completion.chunk"},
                   {"created", meta.created},
                   {"model", meta.model},
                   {"choices", OutJson::array({{{"index", index},
                                                {"delta", std::move(delta)},
                                                {"logprobs", std::move(logprobs)},
                                                {"finish_reason", std::move(finish_reason)}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

nlohmann::ordered_json UsageChunkJson(const ChatMeta& meta, const engine::RequestUsage& usage) {
  return {{"id", meta.id},       {"object", "chat.completion.chunk"}, {"created", meta.created},
          {"model", meta.model}, {"choices", OutJson::array()},       {"usage", UsageJson(usage)}};
}

}  // namespace conclave::server::http
