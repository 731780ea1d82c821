// The Contemplate RPC: several reasoning agents answer one question on the
// batched engine and an aggregator merges their answers (see conclave.proto
// for the request, the events and their order; orchestrator/contemplation.h
// for what runs).
//
// The gRPC side only: the call is authenticated on the gRPC thread, then
// the transport-free ContemplateJob (contemplate_job.h, shared with the
// HTTP endpoint) validates it (INVALID_ARGUMENT naming the field, e.g.
// agents above --max-agents), applies the proto's defaults and runs it on a
// request thread; events stream as they happen (StreamingReactor:
// consecutive text of one agent is merged while a write is in flight).
// Client cancellation, deadlines and server shutdown cancel the run, which
// aborts every agent and frees its blocks.
// Thread-safe: Start may be called concurrently.
#ifndef CONCLAVE_SERVER_CONTEMPLATE_SERVICE_H_
#define CONCLAVE_SERVER_CONTEMPLATE_SERVICE_H_

#include "conclave/v1/conclave.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/service_context.h"

namespace conclave::server {

class ContemplateHandler {
 public:
  // `service` must outlive the handler.
  explicit ContemplateHandler(ServiceContext& service) : service_(service) {}

  // Called on a gRPC callback thread for every Contemplate call; returns the
  // call's reactor without blocking.
  grpc::ServerWriteReactor<v1::ContemplateEvent>* Start(grpc::CallbackServerContext* context,
                                                        const v1::ContemplateRequest& request);

 private:
  ServiceContext& service_;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_CONTEMPLATE_SERVICE_H_
