#include "server/proto_convert.h"

namespace conclave::server {

v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStopToken: return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kStopString: return v1::FINISH_REASON_STOP_STRING;
    case engine::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kAborted: return v1::FINISH_REASON_CANCELLED;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

}  // namespace conclave::server
