#include "orchestrator/engine_client.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/engine.h"

namespace conclave::orchestrator {

absl::StatusOr<std::vector<int32_t>> ChatPromptIds(
    const EngineClient& client, const std::vector<engine::ChatMessage>& messages) {
  absl::StatusOr<std::string> rendered =
      engine::ApplyChatTemplate(client.chat_format(), messages, /*add_generation_prompt=*/true);
  if (!rendered.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("messages: ", rendered.status().message()));
  }
  return client.tokenizer().Encode(*rendered, /*add_special=*/false, /*parse_special=*/true);
}

LocalEngineClient::LocalEngineClient(engine::Engine& engine,
                                     const engine::Tokenizer& tokenizer,
                                     engine::ChatFormat chat_format, int context_length,
                                     std::string model_name)
    : engine_(engine),
      tokenizer_(tokenizer),
      chat_format_(chat_format),
      context_length_(context_length),
      model_name_(std::move(model_name)) {}

absl::StatusOr<std::shared_ptr<engine::RequestStream>> LocalEngineClient::Submit(
    engine::EngineRequest request) {
  return engine_.Submit(std::move(request));
}

void LocalEngineClient::AbortSequence(int64_t request_id, int index) {
  engine_.AbortSequence(request_id, index);
}

absl::Status LocalEngineClient::CheckAdmission() { return engine_.CheckAdmission(); }

int LocalEngineClient::max_sequences_per_request() const {
  return engine_.config().max_sequences_per_request;
}

}  // namespace conclave::orchestrator
