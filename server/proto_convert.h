// Conversions between engine / orchestrator values and their conclave.v1
// protobuf enums, shared by the services.
#ifndef CONCLAVE_SERVER_PROTO_CONVERT_H_
#define CONCLAVE_SERVER_PROTO_CONVERT_H_

#include "conclave/v1/conclave.pb.h"
#include "engine/request.h"

namespace conclave::server {

v1::FinishReason ToProto(engine::FinishReason reason);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_PROTO_CONVERT_H_
