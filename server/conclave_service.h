// The conclave.v1.Conclave gRPC service (callback API): Generate
// (generate_reactor.h), Contemplate (contemplate_service.h) and ListModels.
// The service class lives in the .cc, the only server file that includes the
// generated gRPC header.
#ifndef CONCLAVE_SERVER_CONCLAVE_SERVICE_H_
#define CONCLAVE_SERVER_CONCLAVE_SERVICE_H_

#include <memory>

#include "grpcpp/impl/codegen/service_type.h"
#include "server/service_context.h"

namespace conclave::server {

// `service` must outlive the returned service and every call it serves.
std::unique_ptr<grpc::Service> NewConclaveService(ServiceContext& service);

// "conclave.v1.Conclave", as health checks and reflection name it.
const char* ConclaveServiceName();

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_CONCLAVE_SERVICE_H_
