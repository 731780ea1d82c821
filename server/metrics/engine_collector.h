// The engine's state as Prometheus metrics, read when Prometheus scrapes:
// requests and sequences running and waiting, KV blocks (total, used,
// cached), KV usage by blocks and by token slots, prefix-cache queries and
// hits (in tokens), preemptions, and the admission queue (calls queued,
// calls turned away by its bounds).
//
// Read at scrape time rather than polled: Engine::stats() is a snapshot the
// step loop refreshes after every step (one mutex and a copy to read), so a
// scrape always sees the latest step, costs nothing between scrapes and
// needs no thread of its own. The engine's counters are monotonic, so they
// are exported as counters as they are.
// Thread-safe when `stats` is (Engine::stats() is).
#ifndef CONCLAVE_SERVER_METRICS_ENGINE_COLLECTOR_H_
#define CONCLAVE_SERVER_METRICS_ENGINE_COLLECTOR_H_

#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace conclave::server {

class EngineCollector : public prometheus::Collectable {
 public:
  // `model`: the served model's id (the model label); `stats`: the engine's
  // current stats, called once per scrape.
  EngineCollector(std::string model, std::function<engine::EngineStats()> stats)
      : model_(std::move(model)), stats_(std::move(stats)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string model_;
  const std::function<engine::EngineStats()> stats_;
};

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_METRICS_ENGINE_COLLECTOR_H_
