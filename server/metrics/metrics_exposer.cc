#include "server/metrics/metrics_exposer.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/host_port.h"

namespace conclave::server {

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(
    const std::string& bind, int port,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-port=", port, " must be in [0, 65535] (or -1: no metrics)"));
  }
  const std::string listen = HostPort(bind, port);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb reports a failed bind by throwing.
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen));
  }
  for (const std::shared_ptr<prometheus::Collectable>& c : collectables) {
    exposer->RegisterCollectable(c, "/metrics");
  }
  return std::unique_ptr<MetricsExposer>(
      new MetricsExposer(std::move(exposer), ports[0], HostPort(bind, ports[0])));
}

}  // namespace conclave::server
