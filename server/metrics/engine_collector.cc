#include "server/metrics/engine_collector.h"

#include <utility>

#include "prometheus/client_metric.h"
#include "prometheus/metric_type.h"

namespace conclave::server {
namespace {

// A family of one series, labelled with the model.
prometheus::MetricFamily OneSeries(const std::string& model, std::string name, std::string help,
                                   prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric& m = f.metric.emplace_back();
  m.label.push_back({"model", model});
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return f;
}

double Ratio(double part, double whole) { return whole > 0 ? part / whole : 0.0; }

}  // namespace

std::vector<prometheus::MetricFamily> EngineCollector::Collect() const {
  using prometheus::MetricType;
  const engine::EngineStats s = stats_();
  const engine::BlockManagerStats& kv = s.kv;
  const double token_slots = static_cast<double>(kv.num_blocks) * kv.block_size;
  // Only full prompt blocks are looked up, so blocks x block size is tokens.
  const double block_tokens = kv.block_size;
  std::vector<prometheus::MetricFamily> out;
  auto add = [&](const char* name, const char* help, MetricType type, double value) {
    out.push_back(OneSeries(model_, name, help, type, value));
  };
  add("conclave_num_requests_running",
      "Engine requests started and not finished, preempted ones included (a Contemplate "
      "call makes one per distinct agent prompt and per aggregator pass)",
      MetricType::Gauge, s.active_requests - s.waiting_requests);
  add("conclave_num_requests_waiting", "Engine requests admitted but not started",
      MetricType::Gauge, s.waiting_requests);
  add("conclave_num_sequences_running", "Sequences in the running batch", MetricType::Gauge,
      s.running_sequences);
  add("conclave_num_sequences_waiting", "Sequences waiting to be scheduled (preempted included)",
      MetricType::Gauge, s.waiting_sequences);
  add("conclave_kv_blocks_total", "KV cache blocks in the pool", MetricType::Gauge, kv.num_blocks);
  add("conclave_kv_blocks_used", "KV cache blocks held by live sequences", MetricType::Gauge,
      kv.used_blocks);
  add("conclave_kv_blocks_cached", "KV cache blocks registered in the prefix cache (held or not)",
      MetricType::Gauge, kv.cached_blocks);
  add("conclave_kv_cache_usage_ratio", "Used KV blocks / total KV blocks", MetricType::Gauge,
      Ratio(kv.used_blocks, kv.num_blocks));
  add("conclave_kv_cache_token_usage_ratio",
      "Token slots of used KV blocks that hold a position / all token slots (partial last "
      "blocks count only their positions)",
      MetricType::Gauge, Ratio(static_cast<double>(kv.used_token_slots), token_slots));
  add("conclave_prefix_cache_queries_total",
      "Prompt tokens looked up in the prefix cache (full blocks that could be reused)",
      MetricType::Counter, static_cast<double>(kv.prefix_queries) * block_tokens);
  add("conclave_prefix_cache_hits_total", "Prompt tokens served by the prefix cache",
      MetricType::Counter, static_cast<double>(kv.prefix_hits) * block_tokens);
  add("conclave_num_preemptions_total", "Sequences preempted (blocks freed, recomputed later)",
      MetricType::Counter, static_cast<double>(s.preemptions));
  add("conclave_num_requests_queued",
      "New requests (calls) admitted and not yet started, the queue --max-queued-requests "
      "bounds",
      MetricType::Gauge, s.queued_requests);
  prometheus::MetricFamily shed =
      OneSeries(model_, "conclave_overload_rejections_total",
                "Calls the engine's queue turned away with RESOURCE_EXHAUSTED: queue_full "
                "(--max-queued-requests), queue_timeout (--max-queue-wait-ms)",
                MetricType::Counter, static_cast<double>(s.rejected_queue_full));
  shed.metric[0].label.push_back({"reason", "queue_full"});
  prometheus::ClientMetric& timeout = shed.metric.emplace_back();
  timeout.label = {{"model", model_}, {"reason", "queue_timeout"}};
  timeout.counter.value = static_cast<double>(s.expired_in_queue);
  out.push_back(std::move(shed));
  return out;
}

}  // namespace conclave::server
