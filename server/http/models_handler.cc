#include "server/http/models_handler.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "httplib.h"
#include "server/access_control.h"
#include "server/http/http_response.h"

namespace conclave::server::http {

nlohmann::ordered_json ModelJson(const ModelInfo& model, int max_agents, int64_t created) {
  return {{"id", model.id},
          {"object", "model"},
          {"created", created},
          {"owned_by", "conclave"},
          {"display_name", model.display_name},
          {"architecture", model.architecture},
          {"context_length", model.context_length},
          {"max_agents", max_agents},
          {"chat_format", model.chat_format},
          {"quantization", model.quantization}};
}

nlohmann::ordered_json ModelListJson(const ModelInfo& model, int max_agents, int64_t created) {
  return {{"object", "list"},
          {"data", nlohmann::ordered_json::array({ModelJson(model, max_agents, created)})}};
}

ModelsHandler::ModelsHandler(EndpointContext context)
    : context_(context), created_(UnixSeconds(absl::Now())) {}

bool ModelsHandler::Authorized(const httplib::Request& req, httplib::Response& res) {
  if (context_.draining.load()) {
    SendError(res, ShuttingDownError());
    return false;
  }
  // A valid key is needed, but listing is not charged to its quotas: the
  // Caller is dropped without Finish.
  absl::StatusOr<Caller> caller = context_.service.access().Authenticate(AuthorizationOf(req));
  if (!caller.ok()) {
    SendError(res, ToHttpError(caller.status()));
    return false;
  }
  return true;
}

void ModelsHandler::List(const httplib::Request& req, httplib::Response& res) {
  if (!Authorized(req, res)) return;
  SendJson(res, 200,
           DumpJson(ModelListJson(context_.service.model(), context_.service.limits().max_agents,
                                  created_)));
}

void ModelsHandler::Get(const httplib::Request& req, httplib::Response& res,
                        const std::string& id) {
  if (!Authorized(req, res)) return;
  const ModelInfo& model = context_.service.model();
  if (id != model.id) {
    const std::string shown = id.size() <= 128 ? absl::StrCat("\"", id, "\"") : "(long)";
    HttpError error = ToHttpError(absl::NotFoundError(absl::StrCat(
        "The model ", shown, " does not exist; this server serves \"", model.id, "\"")));
    error.code = "model_not_found";
    error.param = "model";
    SendError(res, error);
    return;
  }
  SendJson(res, 200, DumpJson(ModelJson(model, context_.service.limits().max_agents, created_)));
}

}  // namespace conclave::server::http
