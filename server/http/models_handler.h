// GET /v1/models and GET /v1/models/{id}: OpenAI's model list and model
// object for the one served model. A valid key is needed (401/403 as
// everywhere), but listing is not charged to any quota, as gRPC's
// ListModels. The objects carry OpenAI's fields (id, object, created,
// owned_by) and conclave's ModelInfo (architecture, context_length,
// max_agents, chat_format, quantization, display_name).
// Thread-safe.
#ifndef CONCLAVE_SERVER_HTTP_MODELS_HANDLER_H_
#define CONCLAVE_SERVER_HTTP_MODELS_HANDLER_H_

#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"
#include "server/http/endpoint.h"
#include "server/serving_engine.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace conclave::server::http {

// The model object: {"id", "object": "model", "created", "owned_by":
// "conclave", ...ModelInfo}. `created`: Unix seconds.
nlohmann::ordered_json ModelJson(const ModelInfo& model, int max_agents, int64_t created);

// {"object": "list", "data": [ModelJson]}.
nlohmann::ordered_json ModelListJson(const ModelInfo& model, int max_agents, int64_t created);

class ModelsHandler {
 public:
  // `context`'s members must outlive the handler. Models are reported as
  // created when the handler was (the server's start).
  explicit ModelsHandler(EndpointContext context);

  // GET /v1/models.
  void List(const httplib::Request& req, httplib::Response& res);
  // GET /v1/models/{id}: 404 (code "model_not_found") for another id.
  void Get(const httplib::Request& req, httplib::Response& res, const std::string& id);

 private:
  // Whether the caller's key is valid; answers 401/403 (or 503 when
  // shutting down) and returns false when it is not.
  bool Authorized(const httplib::Request& req, httplib::Response& res);

  EndpointContext context_;
  const int64_t created_;
};

}  // namespace conclave::server::http

#endif  // CONCLAVE_SERVER_HTTP_MODELS_HANDLER_H_
