#include "loadtest/load/requests.h"

namespace conclave::loadtest {

v1::GenerateRequest MakeGenerateRequest(const WorkItem& item, const std::string& question,
                                        const RequestShape& shape) {
  v1::GenerateRequest r;
  r.set_mode(item.mode == Mode::kThinking ? v1::MODE_THINKING : v1::MODE_INSTANT);
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(question);
  r.set_max_tokens(shape.max_tokens);
  r.mutable_sampling()->set_seed(item.seed);
  if (item.mode == Mode::kThinking && shape.thinking_budget > 0) {
    r.set_thinking_budget(shape.thinking_budget);
  }
  return r;
}

v1::ContemplateRequest MakeContemplateRequest(const WorkItem& item, const std::string& question,
                                              const RequestShape& shape) {
  v1::ContemplateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(question);
  r.set_agents(shape.agents);
  r.set_max_tokens(shape.max_tokens);
  if (shape.thinking_budget > 0) r.set_thinking_budget(shape.thinking_budget);
  r.set_seed(item.seed);
  r.set_stream_agent_text(shape.stream_agent_text);
  return r;
}

}  // namespace conclave::loadtest
