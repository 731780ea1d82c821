// EngineCollector: the engine's stats as the gauges and counters a scrape
// reads, with the derived ratios.
#include "server/metrics/engine_collector.h"

#include "gtest/gtest.h"
#include "tests/server/metrics/collected.h"

namespace conclave::server {
namespace {

using testing::Collected;

engine::EngineStats Busy() {
  engine::EngineStats s;
  s.active_requests = 5;
  s.waiting_requests = 2;
  s.running_sequences = 7;
  s.waiting_sequences = 3;
  s.preemptions = 4;
  s.kv.num_blocks = 100;
  s.kv.block_size = 16;
  s.kv.used_blocks = 40;
  s.kv.used_token_slots = 40 * 16 - 100;  // partial last blocks
  s.kv.cached_blocks = 25;
  s.kv.prefix_queries = 10;
  s.kv.prefix_hits = 6;
  return s;
}

TEST(EngineCollectorTest, ExportsQueuesBlocksAndCountersOfTheCurrentStats) {
  engine::EngineStats stats = Busy();
  EngineCollector collector("m", [&stats] { return stats; });
  const Collected c(collector);
  EXPECT_EQ(c.Gauge("conclave_num_requests_running", {{"model", "m"}}), 3);
  EXPECT_EQ(c.Gauge("conclave_num_requests_waiting"), 2);
  EXPECT_EQ(c.Gauge("conclave_num_sequences_running"), 7);
  EXPECT_EQ(c.Gauge("conclave_num_sequences_waiting"), 3);
  EXPECT_EQ(c.Gauge("conclave_kv_blocks_total"), 100);
  EXPECT_EQ(c.Gauge("conclave_kv_blocks_used"), 40);
  EXPECT_EQ(c.Gauge("conclave_kv_blocks_cached"), 25);
  EXPECT_DOUBLE_EQ(c.Gauge("conclave_kv_cache_usage_ratio"), 0.4);
  EXPECT_DOUBLE_EQ(c.Gauge("conclave_kv_cache_token_usage_ratio"), 540.0 / 1600.0);
  // Prefix-cache lookups are whole blocks, exported in tokens.
  EXPECT_EQ(c.Counter("conclave_prefix_cache_queries_total"), 160);
  EXPECT_EQ(c.Counter("conclave_prefix_cache_hits_total"), 96);
  EXPECT_EQ(c.Counter("conclave_num_preemptions_total"), 4);
  EXPECT_EQ(c.Family("conclave_num_preemptions_total")->type, prometheus::MetricType::Counter);
  EXPECT_EQ(c.Family("conclave_kv_blocks_used")->type, prometheus::MetricType::Gauge);
}

TEST(EngineCollectorTest, ExportsTheAdmissionQueueAndWhatItTurnedAway) {
  engine::EngineStats stats = Busy();
  stats.queued_requests = 6;
  stats.rejected_queue_full = 11;
  stats.expired_in_queue = 2;
  EngineCollector collector("m", [&stats] { return stats; });
  const Collected c(collector);
  EXPECT_EQ(c.Gauge("conclave_num_requests_queued"), 6);
  EXPECT_EQ(c.Counter("conclave_overload_rejections_total",
                      {{"model", "m"}, {"reason", "queue_full"}}),
            11);
  EXPECT_EQ(c.Counter("conclave_overload_rejections_total", {{"reason", "queue_timeout"}}), 2);
}

TEST(EngineCollectorTest, EachScrapeReadsTheStatsAgain) {
  engine::EngineStats stats = Busy();
  EngineCollector collector("m", [&stats] { return stats; });
  EXPECT_EQ(Collected(collector).Gauge("conclave_kv_blocks_used"), 40);
  stats.kv.used_blocks = 0;
  stats.preemptions = 9;
  const Collected later(collector);
  EXPECT_EQ(later.Gauge("conclave_kv_blocks_used"), 0);
  EXPECT_EQ(later.Counter("conclave_num_preemptions_total"), 9);
}

TEST(EngineCollectorTest, AnEmptyPoolReadsAsZeroUsageNotNaN) {
  EngineCollector collector("m", [] { return engine::EngineStats{}; });
  const Collected c(collector);
  EXPECT_EQ(c.Gauge("conclave_kv_cache_usage_ratio"), 0);
  EXPECT_EQ(c.Gauge("conclave_kv_cache_token_usage_ratio"), 0);
}

}  // namespace
}  // namespace conclave::server
