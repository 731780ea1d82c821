#include "server/grpc_auth.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/auth/quota.h"

namespace conclave::server {

absl::StatusOr<Caller> AuthenticateCall(AccessControl& access,
                                        const grpc::ServerContextBase& context) {
  std::optional<absl::string_view> authorization;
  // gRPC lowercases metadata keys.
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  return access.Authenticate(authorization);
}

void AddRetryAfterTrailer(grpc::ServerContextBase& context, const absl::Status& status) {
  const std::optional<double> seconds = auth::RetryAfterSeconds(status);
  if (!seconds.has_value()) return;
  context.AddTrailingMetadata(kRetryAfterMetadata,
                              absl::StrCat(auth::RetryAfterHeaderSeconds(*seconds)));
}

}  // namespace conclave::server
