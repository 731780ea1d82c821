#include "orchestrator/plan/agent_plan.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::orchestrator {
namespace {

using ::testing::HasSubstr;

std::vector<AgentSpec> Plan(const PlanOptions& options, int max_agents = 32) {
  absl::StatusOr<std::vector<AgentSpec>> plan = BuildAgentPlan(options, max_agents);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *std::move(plan) : std::vector<AgentSpec>{};
}

std::string ErrorOf(const PlanOptions& options, int max_agents = 32) {
  absl::StatusOr<std::vector<AgentSpec>> plan = BuildAgentPlan(options, max_agents);
  EXPECT_FALSE(plan.ok());
  if (plan.ok()) return "";
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(plan.status().message());
}

TEST(AgentPlanTest, SpreadsTemperaturesEvenlyOverTheRange) {
  PlanOptions options;
  options.agents = 5;
  options.base_temperature = 0.7f;
  options.temperature_spread = 0.4f;
  const std::vector<AgentSpec> plan = Plan(options);
  ASSERT_EQ(plan.size(), 5u);
  const float expected[] = {0.5f, 0.6f, 0.7f, 0.8f, 0.9f};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(plan[i].index, i);
    EXPECT_NEAR(plan[i].temperature, expected[i], 1e-6) << "agent " << i;
  }
}

TEST(AgentPlanTest, ASingleAgentGetsTheBaseTemperature) {
  PlanOptions options;
  options.agents = 1;
  options.base_temperature = 0.1f;  // below spread/2: fine for one agent
  const std::vector<AgentSpec> plan = Plan(options);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].temperature, 0.1f);
}

TEST(AgentPlanTest, ZeroSpreadGivesEveryoneTheBase) {
  PlanOptions options;
  options.agents = 3;
  options.base_temperature = 0.0f;
  options.temperature_spread = 0.0f;
  for (const AgentSpec& spec : Plan(options)) EXPECT_EQ(spec.temperature, 0.0f);
}

TEST(AgentPlanTest, SeedsAreSeedPlusIndexAndDistinct) {
  PlanOptions options;
  options.agents = 32;
  options.seed = 1000;
  const std::vector<AgentSpec> plan = Plan(options);
  absl::flat_hash_set<uint64_t> seeds;
  for (const AgentSpec& spec : plan) {
    EXPECT_EQ(spec.seed, 1000u + spec.index);
    seeds.insert(spec.seed);
  }
  EXPECT_EQ(seeds.size(), 32u);
  // Wraps modulo 2^64 and stays distinct.
  options.agents = 3;
  options.seed = ~uint64_t{0};
  const std::vector<AgentSpec> wrapped = Plan(options);
  EXPECT_EQ(wrapped[0].seed, ~uint64_t{0});
  EXPECT_EQ(wrapped[1].seed, 0u);
  EXPECT_EQ(wrapped[2].seed, 1u);
}

TEST(AgentPlanTest, SamePlanForSameOptions) {
  PlanOptions options;
  options.agents = 7;
  options.seed = 42;
  options.use_roles = true;
  const std::vector<AgentSpec> a = Plan(options);
  const std::vector<AgentSpec> b = Plan(options);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].seed, b[i].seed);
    EXPECT_EQ(a[i].temperature, b[i].temperature);
    EXPECT_EQ(a[i].role, b[i].role);
  }
}

TEST(AgentPlanTest, NoRolesByDefault) {
  PlanOptions options;
  options.agents = 3;
  for (const AgentSpec& spec : Plan(options)) {
    EXPECT_EQ(spec.role, "");
    EXPECT_EQ(spec.role_prompt, "");
  }
}

TEST(AgentPlanTest, BuiltinRolesCycleInOrder) {
  PlanOptions options;
  options.agents = 7;
  options.use_roles = true;
  const std::vector<AgentSpec> plan = Plan(options);
  const char* expected[] = {"direct",        "step_by_step", "work_backwards", "estimate_first",
                            "alternative_method", "direct",  "step_by_step"};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(plan[i].role, expected[i]) << "agent " << i;
  EXPECT_EQ(plan[0].role_prompt, "");  // direct: no extra prompt
  EXPECT_THAT(plan[1].role_prompt, HasSubstr("check each step"));
  EXPECT_THAT(plan[2].role_prompt, HasSubstr("backwards"));
  EXPECT_THAT(plan[3].role_prompt, HasSubstr("estimate"));
  EXPECT_FALSE(plan[4].role_prompt.empty());
}

TEST(AgentPlanTest, ExplicitRolesCycleAndTurnRolesOn) {
  PlanOptions options;
  options.agents = 5;
  options.roles = {"work_backwards", "direct"};
  const std::vector<AgentSpec> plan = Plan(options);
  const char* expected[] = {"work_backwards", "direct", "work_backwards", "direct",
                            "work_backwards"};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(plan[i].role, expected[i]);
  EXPECT_EQ(plan[0].role_prompt, FindRole("work_backwards")->prompt);
}

TEST(AgentPlanTest, ThinkingBudgetIsCopiedToEveryAgent) {
  PlanOptions options;
  options.agents = 4;
  options.thinking_budget = 512;
  for (const AgentSpec& spec : Plan(options)) EXPECT_EQ(spec.thinking_budget, 512);
}

TEST(AgentPlanTest, RejectsAgentCountsOutsideTheLimit) {
  PlanOptions options;
  options.agents = 0;
  EXPECT_THAT(ErrorOf(options), HasSubstr("agents=0"));
  options.agents = 33;
  const std::string error = ErrorOf(options, 32);
  EXPECT_THAT(error, HasSubstr("agents=33"));
  EXPECT_THAT(error, HasSubstr("max_agents=32"));
  options.agents = 32;
  EXPECT_EQ(Plan(options, 32).size(), 32u);
}

TEST(AgentPlanTest, RejectsNegativeOrNonFiniteTemperatures) {
  PlanOptions options;
  options.agents = 2;
  options.base_temperature = -0.1f;
  EXPECT_THAT(ErrorOf(options), HasSubstr("base_temperature=-0.1"));
  options.base_temperature = 0.7f;
  options.temperature_spread = -1.0f;
  EXPECT_THAT(ErrorOf(options), HasSubstr("temperature_spread=-1"));
  options.temperature_spread = 0.3f;
  options.base_temperature = 0.1f;  // lowest agent at 0.1 - 0.15 < 0
  EXPECT_THAT(ErrorOf(options), HasSubstr("lowest agent temperature"));
  options.base_temperature = std::nanf("");
  EXPECT_THAT(ErrorOf(options), HasSubstr("base_temperature"));
  options.base_temperature = 0.15f;  // exactly reaches 0
  const std::vector<AgentSpec> plan = Plan(options);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].temperature, 0.0f);
}

TEST(AgentPlanTest, RejectsUnknownRolesAndNegativeBudgets) {
  PlanOptions options;
  options.agents = 2;
  options.roles = {"direct", "devil_advocate"};
  const std::string error = ErrorOf(options);
  EXPECT_THAT(error, HasSubstr("roles[1]=\"devil_advocate\""));
  EXPECT_THAT(error, HasSubstr("step_by_step"));
  options.roles = {"Direct"};  // case-sensitive
  EXPECT_THAT(ErrorOf(options), HasSubstr("roles[0]"));
  options.roles.clear();
  options.thinking_budget = -1;
  EXPECT_THAT(ErrorOf(options), HasSubstr("thinking_budget=-1"));
}

TEST(BuiltinRolesTest, FiveNamedRolesWithPromptsExceptDirect) {
  const absl::Span<const Role> roles = BuiltinRoles();
  ASSERT_EQ(roles.size(), 5u);
  EXPECT_EQ(roles[0].name, "direct");
  EXPECT_EQ(roles[0].prompt, "");
  for (size_t i = 1; i < roles.size(); ++i) EXPECT_FALSE(roles[i].prompt.empty());
  EXPECT_TRUE(FindRole("alternative_method").has_value());
  EXPECT_FALSE(FindRole("").has_value());
}

}  // namespace
}  // namespace conclave::orchestrator
