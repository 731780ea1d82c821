// The HTTP endpoint Prometheus scrapes: GET /metrics on one address, in the
// text exposition format, serving every registered collectable (the
// ServerMetrics registry and the EngineCollector). prometheus-cpp's Exposer
// (civetweb) with its own two threads; it never touches the gRPC server.
// Thread-safe; stops serving when destroyed.
#ifndef CONCLAVE_SERVER_METRICS_METRICS_EXPOSER_H_
#define CONCLAVE_SERVER_METRICS_METRICS_EXPOSER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace conclave::server {

class MetricsExposer {
 public:
  // Listens on `bind`:`port` (port 0 picks a free one) and serves
  // `collectables` at /metrics; they must outlive the exposer.
  // INVALID_ARGUMENT for a port outside [0, 65535]; UNAVAILABLE naming the
  // address when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(
      const std::string& bind, int port,
      const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);

  // The port actually bound, and "host:port" as a scraper dials it.
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  MetricsExposer(std::unique_ptr<prometheus::Exposer> exposer, int port, std::string address)
      : exposer_(std::move(exposer)), port_(port), address_(std::move(address)) {}

  std::unique_ptr<prometheus::Exposer> exposer_;
  const int port_;
  const std::string address_;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_METRICS_METRICS_EXPOSER_H_
