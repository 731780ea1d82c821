#include "orchestrator/plan/agent_plan.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace conclave::orchestrator {
namespace {

constexpr Role kBuiltinRoles[] = {
    {"direct", ""},
    {"step_by_step",
     "Work through the problem one small step at a time and check each step before "
     "moving on."},
    {"work_backwards",
     "Start from what the question asks for and work backwards to the given facts."},
    {"estimate_first",
     "First estimate roughly what the answer should be, then compute it exactly and "
     "check that it matches your estimate."},
    {"alternative_method",
     "Solve the problem with a less obvious method than the usual one, and verify the "
     "result."},
};

constexpr char kRoleNames[] =
    "direct, step_by_step, work_backwards, estimate_first, alternative_method";

}  // namespace

absl::Span<const Role> BuiltinRoles() { return kBuiltinRoles; }

std::optional<Role> FindRole(std::string_view name) {
  for (const Role& role : kBuiltinRoles) {
    if (role.name == name) return role;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<AgentSpec>> BuildAgentPlan(const PlanOptions& options,
                                                      int max_agents) {
  const int n = options.agents;
  if (n < 1 || n > max_agents) {
    return absl::InvalidArgumentError(
        absl::StrFormat("agents=%d must be in [1, max_agents=%d]", n, max_agents));
  }
  const float base = options.base_temperature;
  const float spread = options.temperature_spread;
  if (!std::isfinite(base) || base < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrFormat("base_temperature=%g must be finite and >= 0", base));
  }
  if (!std::isfinite(spread) || spread < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrFormat("temperature_spread=%g must be finite and >= 0", spread));
  }
  if (n > 1 && base - spread / 2 < 0.0f) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "lowest agent temperature base_temperature - temperature_spread/2 = %g - %g/2 "
        "must be >= 0",
        base, spread));
  }
  if (options.thinking_budget < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "thinking_budget=%d must be >= 0", options.thinking_budget));
  }

  std::vector<Role> cycle;
  if (!options.roles.empty()) {
    for (size_t i = 0; i < options.roles.size(); ++i) {
      std::optional<Role> role = FindRole(options.roles[i]);
      if (!role.has_value()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "roles[%d]=\"%s\" is not a built-in role (%s)", i,
            absl::CHexEscape(options.roles[i].substr(0, 64)), kRoleNames));
      }
      cycle.push_back(*role);
    }
  } else if (options.use_roles) {
    cycle.assign(std::begin(kBuiltinRoles), std::end(kBuiltinRoles));
  }

  std::vector<AgentSpec> plan(n);
  for (int i = 0; i < n; ++i) {
    AgentSpec& spec = plan[i];
    spec.index = i;
    spec.temperature = n == 1 ? base
                              : base - spread / 2 +
                                    spread * static_cast<float>(i) / static_cast<float>(n - 1);
    spec.seed = options.seed + static_cast<uint64_t>(i);
    spec.thinking_budget = options.thinking_budget;
    if (!cycle.empty()) {
      const Role& role = cycle[i % cycle.size()];
      spec.role = std::string(role.name);
      spec.role_prompt = std::string(role.prompt);
    }
  }
  return plan;
}

}  // namespace conclave::orchestrator
