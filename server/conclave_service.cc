#include "server/conclave_service.h"

#include "conclave/v1/conclave.grpc.pb.h"
#include "server/contemplate_service.h"
#include "server/generate_reactor.h"
#include "server/grpc_auth.h"
#include "server/status_map.h"

namespace conclave::server {
namespace {

class ConclaveService final : public v1::Conclave::CallbackService {
 public:
  explicit ConclaveService(ServiceContext& service) : service_(service), contemplate_(service) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override {
    return new GenerateReactor(service_, context, *request);
  }

  grpc::ServerWriteReactor<v1::ContemplateEvent>* Contemplate(
      grpc::CallbackServerContext* context, const v1::ContemplateRequest* request) override {
    return contemplate_.Start(context, *request);
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* /*request*/,
                                       v1::ListModelsResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // A valid key is needed, but listing is not charged to its quotas.
    if (absl::StatusOr<Caller> caller = AuthenticateCall(service_.access(), *context);
        !caller.ok()) {
      reactor->Finish(ToGrpcStatus(caller.status()));
      return reactor;
    }
    const ModelInfo& m = service_.model();
    v1::ModelInfo* info = response->add_models();
    info->set_id(m.id);
    info->set_display_name(m.display_name);
    info->set_architecture(m.architecture);
    info->set_context_length(m.context_length);
    info->set_max_agents(service_.limits().max_agents);
    info->set_chat_format(m.chat_format);
    info->set_quantization(m.quantization);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  ServiceContext& service_;
  ContemplateHandler contemplate_;
};

}  // namespace

const char* ConclaveServiceName() { return v1::Conclave::service_full_name(); }

std::unique_ptr<grpc::Service> NewConclaveService(ServiceContext& service) {
  return std::make_unique<ConclaveService>(service);
}

}  // namespace conclave::server
