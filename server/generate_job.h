// The transport-free half of the Generate RPC: renders the conversation
// with the model's chat template, encodes it, resolves the token budget and
// runs MODE_INSTANT (one engine request) or MODE_THINKING
// (orchestrator::ThinkingGenerator), handing every piece of output to a sink.
// The gRPC reactor (generate_reactor.h) owns one per call and runs it on a
// request thread.
// Run is called once, on a thread that may block; Cancel from any thread.
#ifndef CONCLAVE_SERVER_GENERATE_JOB_H_
#define CONCLAVE_SERVER_GENERATE_JOB_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/request.h"
#include "engine/request_stream.h"
#include "orchestrator/engine_client.h"
#include "orchestrator/thinking.h"
#include "server/auth/quota.h"
#include "server/validation.h"

namespace conclave::server {

// Output of the model, in order. Thinking chunks all precede answer chunks.
struct GenerateChunk {
  bool thinking = false;
  std::string text;
  std::vector<engine::TokenOutput> tokens;
  int index = 0;  // the sequence, [0, GeneratePlan::n)
  // Set on the sequence's last chunk in MODE_INSTANT when that chunk has
  // tokens or text (kStopToken: its last token is the end-of-generation
  // token, which has no text); kNone otherwise. GenerateOutcome::finishes
  // has every sequence's.
  engine::FinishReason finish = engine::FinishReason::kNone;
};

struct GenerateOutcome {
  // Why the answer ended (sequence 0's); kAborted after Cancel.
  engine::FinishReason finish = engine::FinishReason::kNone;
  // Why each sequence ended, [GeneratePlan::n]; finishes[0] == finish.
  std::vector<engine::FinishReason> finishes;
  engine::RequestUsage usage;  // summed over the engine requests
  int thinking_tokens = 0;
  std::optional<orchestrator::ThinkingEnd> thinking_end;  // thinking mode
  uint64_t seed = 0;   // the seed used
  int max_tokens = 0;  // as resolved
  // When the first token arrived; InfinitePast when none did.
  absl::Time first_token_at = absl::InfinitePast();
};

class GenerateJob {
 public:
  using Sink = std::function<void(GenerateChunk)>;

  // `client` must outlive the job. `seed` is used when the plan has none.
  // Every engine request of the job gets `cache_salt` (the caller's API
  // key's, AccessControl), so it reuses only blocks cached under that key.
  GenerateJob(orchestrator::EngineClient& client, GeneratePlan plan, RequestLimits limits,
              uint64_t seed, uint64_t cache_salt = 0);
  GenerateJob(const GenerateJob&) = delete;
  GenerateJob& operator=(const GenerateJob&) = delete;

  // Blocks until generation ends. Errors: INVALID_ARGUMENT (template, prompt
  // too long for the limits or the context; n > 1 outside MODE_INSTANT), and
  // what the engine reports on Submit (RESOURCE_EXHAUSTED when its queue is
  // full, UNAVAILABLE when it is shutting down) or while running. A
  // cancelled job returns OK with finish == kAborted.
  absl::StatusOr<GenerateOutcome> Run(const Sink& sink);

  // Stops generation at the engine's next step (idempotent).
  void Cancel();

 private:
  absl::StatusOr<GenerateOutcome> RunInstant(std::vector<int32_t> prompt, int max_tokens,
                                             const Sink& sink);
  absl::StatusOr<GenerateOutcome> RunThinking(std::vector<int32_t> prompt,
                                              const TokenBudget& budget, const Sink& sink);
  void NoteTokens(size_t count);

  orchestrator::EngineClient& client_;
  GeneratePlan plan_;  // plan_.sampling.seed is the seed used
  const RequestLimits limits_;
  const uint64_t cache_salt_;
  absl::Time first_token_at_ = absl::InfinitePast();  // touched only by Run's thread
  orchestrator::ThinkingGenerator thinking_;

  std::mutex mu_;  // guards cancelled_ and stream_
  bool cancelled_ = false;
  std::shared_ptr<engine::RequestStream> stream_;  // MODE_INSTANT's request
};

// What `plan` asks of its key's quotas (Caller::Admit), for every transport:
// `n` agents (1 for the gRPC API), thinking mode's budget, and the token
// estimate of EstimateTokens: prompt bytes / 4 (prefilled twice in thinking
// mode, once for all n sequences) plus n x max_tokens, max_tokens defaulted
// as ResolveTokenBudget does before it knows the prompt's length (so never
// below what it will resolve to).
auth::AdmissionRequest GenerateAdmission(const GeneratePlan& plan, const RequestLimits& limits);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_GENERATE_JOB_H_
