// Agent plans: how the N agents of a Contemplate request differ from each
// other. Each agent gets a temperature from an evenly spread range, its own
// seed, optionally a role (a one-sentence reasoning strategy added to its
// system prompt) and a thinking budget.
// Thread-safe: pure functions.
#ifndef CONCLAVE_ORCHESTRATOR_PLAN_AGENT_PLAN_H_
#define CONCLAVE_ORCHESTRATOR_PLAN_AGENT_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace conclave::orchestrator {

struct AgentSpec {
  int index = 0;            // 0..agents-1; also the engine sequence index
  std::string role;         // "" when roles are off, else a built-in role name
  std::string role_prompt;  // "" for no role and for "direct"
  float temperature = 0.0f;
  uint64_t seed = 0;
  int thinking_budget = 0;  // tokens of reasoning before the answer is forced; 0 = none
};

struct PlanOptions {
  int agents = 1;  // 1..max_agents
  // Agent i of n > 1 gets base - spread/2 + spread * i/(n-1), so the agents
  // cover [base - spread/2, base + spread/2] evenly; a single agent gets base.
  float base_temperature = 0.7f;    // >= 0
  float temperature_spread = 0.3f;  // >= 0; base - spread/2 must be >= 0 when agents > 1
  uint64_t seed = 0;  // agent i gets seed + i (mod 2^64)
  // Roles: with use_roles, agent i gets BuiltinRoles()[i % 5] ("direct"
  // first). A non-empty `roles` list of built-in names is used instead,
  // cycled the same way, and turns roles on by itself.
  bool use_roles = false;
  std::vector<std::string> roles;
  int thinking_budget = 0;  // >= 0, the same for every agent
};

// A built-in role: its name and the sentence added to the system prompt.
struct Role {
  std::string_view name;
  std::string_view prompt;  // "" for "direct"
};

// "direct", "step_by_step", "work_backwards", "estimate_first",
// "alternative_method", in that order.
absl::Span<const Role> BuiltinRoles();

// The built-in role called `name` (exact, case-sensitive), or nullopt.
std::optional<Role> FindRole(std::string_view name);

// One spec per agent, index order. INVALID_ARGUMENT naming the field and the
// limit, and no plan, when: agents < 1 or > max_agents; base_temperature or
// temperature_spread is negative or not finite; the lowest agent temperature
// base - spread/2 is negative (agents > 1); thinking_budget < 0; a name in
// `roles` is not a built-in role. Seeds are seed + index: distinct for up to
// 2^64 agents, and the same convention as an engine request whose single
// SamplingParams entry draws sequence i with seed + i.
absl::StatusOr<std::vector<AgentSpec>> BuildAgentPlan(const PlanOptions& options,
                                                      int max_agents);

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_PLAN_AGENT_PLAN_H_
