// The orchestrator's only view of an engine: submit a request, get its
// stream, abort one of its sequences. The in-process implementation wraps an
// Engine; a remote one (engine replicas over gRPC) can implement the same
// interface, so orchestration code never knows where the engine runs.
// Thread-safe: every method may be called from any thread.
#ifndef CONCLAVE_ORCHESTRATOR_ENGINE_CLIENT_H_
#define CONCLAVE_ORCHESTRATOR_ENGINE_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/request.h"
#include "engine/request_stream.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace conclave::engine {
class Engine;
}

namespace conclave::orchestrator {

class EngineClient {
 public:
  virtual ~EngineClient() = default;

  // Engine::Submit: INVALID_ARGUMENT, RESOURCE_EXHAUSTED or UNAVAILABLE, and
  // nothing queued, on error. Cancel the stream to abort the whole request.
  virtual absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(
      engine::EngineRequest request) = 0;
  // Ends one sequence of a request (Engine::AbortSequence).
  virtual void AbortSequence(int64_t request_id, int index) = 0;
  // Engine::CheckAdmission: whether a new request (not a continuation) would
  // be queued now, so that a call can be refused before it is prepared. An
  // engine that cannot tell answers OK and leaves it to Submit.
  virtual absl::Status CheckAdmission() { return absl::OkStatus(); }

  virtual const engine::Tokenizer& tokenizer() const = 0;
  virtual engine::ChatFormat chat_format() const = 0;
  virtual int context_length() const = 0;      // positions per sequence
  virtual int max_sequences_per_request() const = 0;
  virtual const std::string& model_name() const = 0;
};

// The chat prompt as the engine sees it: the client's chat template with
// the generation prompt, encoded with add_special=false (the template writes
// BOS where the model wants one) and parse_special=true (the template's own
// markers). INVALID_ARGUMENT, prefixed "messages: ", when the template
// rejects the conversation.
absl::StatusOr<std::vector<int32_t>> ChatPromptIds(const EngineClient& client,
                                                   const std::vector<engine::ChatMessage>& messages);

// An Engine in this process. `engine` and `tokenizer` must outlive it.
class LocalEngineClient : public EngineClient {
 public:
  LocalEngineClient(engine::Engine& engine, const engine::Tokenizer& tokenizer,
                    engine::ChatFormat chat_format, int context_length,
                    std::string model_name);

  absl::StatusOr<std::shared_ptr<engine::RequestStream>> Submit(
      engine::EngineRequest request) override;
  void AbortSequence(int64_t request_id, int index) override;
  absl::Status CheckAdmission() override;
  const engine::Tokenizer& tokenizer() const override { return tokenizer_; }
  engine::ChatFormat chat_format() const override { return chat_format_; }
  int context_length() const override { return context_length_; }
  int max_sequences_per_request() const override;
  const std::string& model_name() const override { return model_name_; }

 private:
  engine::Engine& engine_;
  const engine::Tokenizer& tokenizer_;
  const engine::ChatFormat chat_format_;
  const int context_length_;
  const std::string model_name_;
};

}  // namespace conclave::orchestrator

#endif  // CONCLAVE_ORCHESTRATOR_ENGINE_CLIENT_H_
