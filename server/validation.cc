#include "server/validation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/sampling/stop_checker.h"
#include "orchestrator/contemplate_options.h"

namespace conclave::server {
namespace {

constexpr int kMaxRoles = orchestrator::kMaxRoles;
constexpr size_t kMaxRoleBytes = 4096;
constexpr int kMaxConfidenceWindow = 8192;

absl::Status Invalid(auto&&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(parts...));
}

// lo <= x <= hi, false for NaN.
bool InClosed(double x, double lo, double hi) { return x >= lo && x <= hi; }

absl::Status CheckUtf8(absl::string_view s, absl::string_view field) {
  const size_t bad = FindInvalidUtf8(s);
  if (bad == absl::string_view::npos) return absl::OkStatus();
  return Invalid(field, " is not valid UTF-8 (byte ", bad, ")");
}

absl::Status CheckTemperature(float t, absl::string_view field) {
  if (!InClosed(t, 0.0, 2.0)) return Invalid(field, "=", t, " must be in [0, 2]");
  return absl::OkStatus();
}

absl::StatusOr<engine::SamplingParams> ValidateSampling(const v1::SamplingParams& s,
                                                       const RequestLimits& limits) {
  engine::SamplingParams p;
  p.temperature = s.has_temperature() ? s.temperature() : kDefaultTemperature;
  if (absl::Status st = CheckTemperature(p.temperature, "sampling.temperature"); !st.ok()) {
    return st;
  }
  p.top_p = s.has_top_p() ? s.top_p() : kDefaultTopP;
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return Invalid("sampling.top_p=", p.top_p, " must be in (0, 1]");
  }
  p.top_k = s.has_top_k() ? s.top_k() : 0;
  if (p.top_k < 0 || (limits.vocab_size > 0 && p.top_k > limits.vocab_size)) {
    return Invalid("sampling.top_k=", p.top_k, " must be in [0, ", limits.vocab_size,
                   "] (the vocabulary size)");
  }
  p.min_p = s.has_min_p() ? s.min_p() : 0.0f;
  if (!InClosed(p.min_p, 0.0, 1.0)) return Invalid("sampling.min_p=", p.min_p, " must be in [0, 1]");
  p.presence_penalty = s.has_presence_penalty() ? s.presence_penalty() : 0.0f;
  if (!InClosed(p.presence_penalty, -2.0, 2.0)) {
    return Invalid("sampling.presence_penalty=", p.presence_penalty, " must be in [-2, 2]");
  }
  p.frequency_penalty = s.has_frequency_penalty() ? s.frequency_penalty() : 0.0f;
  if (!InClosed(p.frequency_penalty, -2.0, 2.0)) {
    return Invalid("sampling.frequency_penalty=", p.frequency_penalty, " must be in [-2, 2]");
  }
  p.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty() : 1.0f;
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f)) {
    return Invalid("sampling.repetition_penalty=", p.repetition_penalty, " must be in (0, 10]");
  }
  p.logprobs = s.logprobs();
  if (p.logprobs < 0 || p.logprobs > engine::kMaxLogprobs) {
    return Invalid("sampling.logprobs=", p.logprobs, " must be in [0, ", engine::kMaxLogprobs, "]");
  }
  p.seed = s.has_seed() ? s.seed() : 0;
  // The engine's own check, so that nothing it would reject gets past here.
  if (absl::Status st = engine::ValidateSamplingParams(p); !st.ok()) {
    return Invalid("sampling.", st.message());
  }
  return p;
}

absl::StatusOr<int> ValidateMaxTokens(const std::optional<int>& max_tokens, int min,
                                      const RequestLimits& limits) {
  if (!max_tokens.has_value()) return 0;
  if (*max_tokens < min || *max_tokens > limits.max_tokens_limit) {
    return Invalid("max_tokens=", *max_tokens, " must be in [", min, ", ", limits.max_tokens_limit,
                   "] (the server's --max-tokens-limit)");
  }
  return *max_tokens;
}

absl::Status ValidateStop(const google::protobuf::RepeatedPtrField<std::string>& stop) {
  const std::vector<std::string> strings(stop.begin(), stop.end());
  return engine::ValidateStopStrings(strings);
}

std::optional<int> OptionalInt(bool has, int value) {
  return has ? std::optional<int>(value) : std::nullopt;
}

}  // namespace

const char* GenerateModeName(GenerateMode mode) {
  return mode == GenerateMode::kThinking ? "thinking" : "instant";
}

size_t FindInvalidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;  // overlong
      if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;  // overlong
      if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b1 < lo || b1 > hi) return i;
    for (int k = 2; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < 0x80 || b > 0xBF) return i;
    }
    i += len;
  }
  return absl::string_view::npos;
}

absl::Status ValidateModel(const std::string& model, const RequestLimits& limits) {
  if (model.empty() || model == limits.model_id) return absl::OkStatus();
  const std::string shown = model.size() <= 128 && FindInvalidUtf8(model) == absl::string_view::npos
                                ? absl::StrCat("\"", model, "\"")
                                : "(long or not UTF-8)";
  return Invalid("model ", shown, " is not served here; ListModels lists \"", limits.model_id,
                 "\" (or leave model empty)");
}

absl::StatusOr<std::vector<engine::ChatMessage>> ValidateMessages(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages,
    absl::string_view field) {
  if (messages.empty()) return Invalid(field, " is empty; give at least one message");
  std::vector<engine::ChatMessage> out;
  out.reserve(messages.size());
  for (int i = 0; i < messages.size(); ++i) {
    const v1::ChatMessage& m = messages[i];
    const std::string at = absl::StrCat(field, "[", i, "]");
    std::string role;
    switch (m.role()) {
      case v1::ROLE_SYSTEM: role = "system"; break;
      case v1::ROLE_USER: role = "user"; break;
      case v1::ROLE_ASSISTANT: role = "assistant"; break;
      case v1::ROLE_UNSPECIFIED:
        if (m.role_name() == "system" || m.role_name() == "user" ||
            m.role_name() == "assistant") {
          role = m.role_name();
        } else if (m.role_name() == "model") {
          role = "assistant";
        } else if (m.role_name().empty()) {
          return Invalid(at, ".role is unset; set role (ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT) "
                             "or role_name (system, user, assistant)");
        } else {
          if (absl::Status s = CheckUtf8(m.role_name(), at + ".role_name"); !s.ok()) return s;
          // Echo short names only: the message must stay small.
          const std::string shown =
              m.role_name().size() <= 64 ? absl::StrCat("\"", m.role_name(), "\"") : "(long)";
          return Invalid(at, ".role_name ", shown,
                         " is not a known role (system, user, assistant)");
        }
        break;
      default:
        return Invalid(at, ".role=", static_cast<int>(m.role()), " is not a known Role");
    }
    if (absl::Status s = CheckUtf8(m.content(), at + ".content"); !s.ok()) return s;
    out.push_back(engine::ChatMessage{std::move(role), m.content()});
  }
  return out;
}

absl::StatusOr<GeneratePlan> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                     const RequestLimits& limits) {
  GeneratePlan plan;
  if (absl::Status s = ValidateModel(request.model(), limits); !s.ok()) return s;
  switch (request.mode()) {
    case v1::MODE_UNSPECIFIED:
    case v1::MODE_INSTANT: plan.mode = GenerateMode::kInstant; break;
    case v1::MODE_THINKING: plan.mode = GenerateMode::kThinking; break;
    case v1::MODE_CONTEMPLATING:
      return Invalid("mode=MODE_CONTEMPLATING is served by the Contemplate RPC, not Generate");
    default: return Invalid("mode=", static_cast<int>(request.mode()), " is not a known Mode");
  }

  if (request.has_prompt()) {
    if (!request.messages().empty()) {
      return Invalid("messages and prompt are exclusive; give one of them");
    }
    if (plan.mode != GenerateMode::kInstant) {
      return Invalid("prompt (a raw prompt) is only for MODE_INSTANT; use messages");
    }
    if (request.prompt().empty()) return Invalid("prompt is empty");
    if (absl::Status s = CheckUtf8(request.prompt(), "prompt"); !s.ok()) return s;
    plan.raw_prompt = request.prompt();
  } else {
    absl::StatusOr<std::vector<engine::ChatMessage>> messages =
        ValidateMessages(request.messages(), "messages");
    if (!messages.ok()) return messages.status();
    plan.messages = *std::move(messages);
  }

  absl::StatusOr<engine::SamplingParams> sampling = ValidateSampling(request.sampling(), limits);
  if (!sampling.ok()) return sampling.status();
  plan.sampling = *sampling;
  plan.seed_given = request.sampling().has_seed();

  const int min_tokens = plan.mode == GenerateMode::kThinking ? 2 : 1;
  plan.max_tokens = OptionalInt(request.has_max_tokens(), request.max_tokens());
  if (absl::StatusOr<int> m = ValidateMaxTokens(plan.max_tokens, min_tokens, limits); !m.ok()) {
    return m.status();
  }

  plan.thinking_budget = OptionalInt(request.has_thinking_budget(), request.thinking_budget());
  if (plan.thinking_budget.has_value()) {
    if (plan.mode != GenerateMode::kThinking) {
      return Invalid("thinking_budget applies only to MODE_THINKING");
    }
    const int upper = plan.max_tokens.has_value() ? *plan.max_tokens - 1 : limits.max_tokens_limit - 1;
    if (*plan.thinking_budget < 1 || *plan.thinking_budget > upper) {
      return Invalid("thinking_budget=", *plan.thinking_budget, " must be in [1, ", upper,
                     plan.max_tokens.has_value() ? "] (max_tokens - 1)"
                                                 : "] (--max-tokens-limit - 1)");
    }
  }

  if (absl::Status s = ValidateStop(request.stop()); !s.ok()) return s;
  plan.stop.assign(request.stop().begin(), request.stop().end());
  return plan;
}

absl::StatusOr<TokenBudget> ResolveTokenBudget(const GeneratePlan& plan, int prompt_tokens,
                                               const RequestLimits& limits) {
  if (prompt_tokens < 1) return Invalid("the prompt encodes to no tokens");
  if (prompt_tokens > limits.max_prompt_tokens) {
    return Invalid("prompt is ", prompt_tokens, " tokens after the chat template; the limit is ",
                   "max_prompt_tokens=", limits.max_prompt_tokens);
  }
  const bool thinking = plan.mode == GenerateMode::kThinking;
  const int reserve = thinking ? kThinkingReserveTokens : 0;
  const int min_tokens = thinking ? 2 : 1;
  const int room = limits.context_length - prompt_tokens - reserve;
  if (room < min_tokens) {
    return Invalid("prompt of ", prompt_tokens, " tokens leaves no room to generate in the ",
                   "model's context of ", limits.context_length, " tokens");
  }
  TokenBudget budget;
  if (plan.max_tokens.has_value()) {
    if (*plan.max_tokens > room) {
      return Invalid("prompt of ", prompt_tokens, " tokens + max_tokens=", *plan.max_tokens,
                     thinking ? absl::StrCat(" + ", reserve, " reserved for thinking mode") : "",
                     " exceeds the model's context of ", limits.context_length, " tokens");
    }
    budget.max_tokens = *plan.max_tokens;
  } else {
    int wanted = thinking ? kDefaultThinkingMaxTokens : kDefaultInstantMaxTokens;
    if (plan.thinking_budget.has_value()) wanted = std::max(wanted, *plan.thinking_budget + 256);
    budget.max_tokens = std::min({wanted, limits.max_tokens_limit, room});
    // Only the server's limit can be below the mode's minimum (room is not).
    if (budget.max_tokens < min_tokens) {
      return Invalid(GenerateModeName(plan.mode), " mode generates at least ", min_tokens,
                     " tokens; the server's --max-tokens-limit is ", limits.max_tokens_limit);
    }
  }
  if (thinking) {
    if (plan.thinking_budget.has_value()) {
      if (*plan.thinking_budget > budget.max_tokens - 1) {
        return Invalid("thinking_budget=", *plan.thinking_budget, " must be below max_tokens=",
                       budget.max_tokens, " (what the context leaves after the prompt)");
      }
      budget.thinking_budget = *plan.thinking_budget;
    } else {
      budget.thinking_budget = std::clamp(budget.max_tokens * 3 / 4, 1, budget.max_tokens - 1);
    }
  }
  return budget;
}

absl::Status ValidateContemplateRequest(const v1::ContemplateRequest& request,
                                        const RequestLimits& limits) {
  if (absl::Status s = ValidateModel(request.model(), limits); !s.ok()) return s;
  if (absl::StatusOr<std::vector<engine::ChatMessage>> m =
          ValidateMessages(request.messages(), "messages");
      !m.ok()) {
    return m.status();
  }
  const int agents = request.has_agents()
                         ? request.agents()
                         : std::min(kDefaultContemplateAgents, limits.max_agents);
  if (agents < 1 || agents > limits.max_agents) {
    return Invalid("agents=", agents, " must be in [1, ", limits.max_agents,
                   "] (the server's --max-agents)");
  }
  if (!v1::Aggregator_IsValid(request.aggregator())) {
    return Invalid("aggregator=", static_cast<int>(request.aggregator()),
                   " is not a known Aggregator");
  }
  if (!v1::AnswerFormat_IsValid(request.answer_format())) {
    return Invalid("answer_format=", static_cast<int>(request.answer_format()),
                   " is not a known AnswerFormat");
  }
  if (request.has_temperature()) {
    if (absl::Status s = CheckTemperature(request.temperature(), "temperature"); !s.ok()) return s;
  }
  if (request.has_temperature_spread() && !InClosed(request.temperature_spread(), 0.0, 2.0)) {
    return Invalid("temperature_spread=", request.temperature_spread(), " must be in [0, 2]");
  }
  if (request.roles_size() > kMaxRoles) {
    return Invalid("roles has ", request.roles_size(), " entries; at most ", kMaxRoles);
  }
  for (int i = 0; i < request.roles_size(); ++i) {
    const std::string field = absl::StrCat("roles[", i, "]");
    if (request.roles(i).size() > kMaxRoleBytes) {
      return Invalid(field, " is ", request.roles(i).size(), " bytes; at most ", kMaxRoleBytes);
    }
    if (absl::Status s = CheckUtf8(request.roles(i), field); !s.ok()) return s;
  }
  if (absl::Status s = ValidateStop(request.stop()); !s.ok()) return s;
  const std::optional<int> max_tokens = OptionalInt(request.has_max_tokens(), request.max_tokens());
  if (absl::StatusOr<int> m = ValidateMaxTokens(max_tokens, 2, limits); !m.ok()) return m.status();
  // What the agents get: the request's max_tokens, else the default lowered
  // to the server's limit (ToContemplateOptions); thinking_budget is below it.
  const int agent_max_tokens =
      max_tokens.value_or(std::min(kDefaultContemplateMaxTokens, limits.max_tokens_limit));
  if (agent_max_tokens < 2) {
    return Invalid("Contemplate agents generate at least 2 tokens; the server's "
                   "--max-tokens-limit is ", limits.max_tokens_limit);
  }
  if (request.has_thinking_budget()) {
    const int upper = agent_max_tokens - 1;
    if (request.thinking_budget() < 1 || request.thinking_budget() > upper) {
      return Invalid("thinking_budget=", request.thinking_budget(), " must be in [1, ", upper,
                     "] (max_tokens - 1",
                     max_tokens.has_value()
                         ? std::string(")")
                         : absl::StrCat("; max_tokens is absent, so ", agent_max_tokens, ")"));
    }
  }
  const v1::ConsensusStopping& consensus = request.stopping().consensus();
  if (consensus.has_min_finished() &&
      (consensus.min_finished() < 1 || consensus.min_finished() > agents)) {
    return Invalid("stopping.consensus.min_finished=", consensus.min_finished(),
                   " must be in [1, agents=", agents, "]");
  }
  if (consensus.has_vote_share() &&
      !(consensus.vote_share() > 0.5f && consensus.vote_share() <= 1.0f)) {
    return Invalid("stopping.consensus.vote_share=", consensus.vote_share(),
                   " must be in (0.5, 1]");
  }
  const v1::ConfidenceStopping& confidence = request.stopping().confidence();
  if (confidence.enabled() && agents < 2) {
    return Invalid("stopping.confidence needs agents >= 2 (warm-up agents plus others); agents=",
                   agents);
  }
  if (confidence.has_warmup_agents() &&
      (confidence.warmup_agents() < 1 || confidence.warmup_agents() > agents - 1)) {
    return Invalid("stopping.confidence.warmup_agents=", confidence.warmup_agents(),
                   " must be in [1, agents - 1 = ", agents - 1, "]");
  }
  if (confidence.has_keep_top_percent() &&
      !(confidence.keep_top_percent() > 0.0f && confidence.keep_top_percent() <= 100.0f)) {
    return Invalid("stopping.confidence.keep_top_percent=", confidence.keep_top_percent(),
                   " must be in (0, 100]");
  }
  if (confidence.has_window() &&
      (confidence.window() < 1 || confidence.window() > kMaxConfidenceWindow)) {
    return Invalid("stopping.confidence.window=", confidence.window(), " must be in [1, ",
                   kMaxConfidenceWindow, "]");
  }
  if (request.has_confidence_eta() &&
      !(request.confidence_eta() > 0.0f && request.confidence_eta() <= 100.0f)) {
    return Invalid("confidence_eta=", request.confidence_eta(), " must be in (0, 100]");
  }
  return absl::OkStatus();
}

}  // namespace conclave::server
