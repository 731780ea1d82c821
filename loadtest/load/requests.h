// The conclave.v1 request each WorkItem sends: Generate in MODE_INSTANT or
// MODE_THINKING, or Contemplate with `agents` agents, the question as one
// user message, the item's seed, and the run's token limits.
// Thread-safe: pure functions.
#ifndef CONCLAVE_LOADTEST_LOAD_REQUESTS_H_
#define CONCLAVE_LOADTEST_LOAD_REQUESTS_H_

#include <string>

#include "conclave/v1/conclave.pb.h"
#include "loadtest/load/workload.h"

namespace conclave::loadtest {

struct RequestShape {
  int agents = 8;           // Contemplate agents
  int max_tokens = 64;      // per answer (per agent for Contemplate)
  int thinking_budget = 0;  // MODE_THINKING and Contemplate; 0: the server's default
  // Contemplate streams every agent's text (as a client showing progress
  // would); time to first token is then the first agent text.
  bool stream_agent_text = true;
};

// For kInstant and kThinking.
v1::GenerateRequest MakeGenerateRequest(const WorkItem& item, const std::string& question,
                                        const RequestShape& shape);

// For kContemplate.
v1::ContemplateRequest MakeContemplateRequest(const WorkItem& item, const std::string& question,
                                              const RequestShape& shape);

}  // namespace conclave::loadtest

#endif  // CONCLAVE_LOADTEST_LOAD_REQUESTS_H_
