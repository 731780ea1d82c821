#include "server/service_context.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace conclave::server {

std::string ServiceContext::NextRequestId() {
  return absl::StrCat(next_request_id_.fetch_add(1, std::memory_order_relaxed));
}

uint64_t ServiceContext::DrawSeed() {
  // absl::BitGen is not thread-safe; one per call is cheap next to a request.
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

}  // namespace conclave::server
