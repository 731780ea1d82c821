// Reading values back from what a prometheus::Collectable collects, for the
// metrics tests. A series is found by its family name and a subset of its
// labels; a missing one fails the test (and reads as -1).
#ifndef CONCLAVE_TESTS_SERVER_METRICS_COLLECTED_H_
#define CONCLAVE_TESTS_SERVER_METRICS_COLLECTED_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace conclave::server::testing {

using LabelSet = std::map<std::string, std::string>;

class Collected {
 public:
  explicit Collected(const prometheus::Collectable& c) : families_(c.Collect()) {}

  const std::vector<prometheus::MetricFamily>& families() const { return families_; }

  const prometheus::MetricFamily* Family(const std::string& name) const {
    for (const prometheus::MetricFamily& f : families_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // The one series of `name` whose labels include `labels`.
  const prometheus::ClientMetric* Series(const std::string& name, const LabelSet& labels) const {
    const prometheus::MetricFamily* f = Family(name);
    if (f == nullptr) {
      ADD_FAILURE() << "no metric family " << name;
      return nullptr;
    }
    const prometheus::ClientMetric* found = nullptr;
    for (const prometheus::ClientMetric& m : f->metric) {
      int matched = 0;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        auto it = labels.find(l.name);
        if (it != labels.end() && it->second == l.value) ++matched;
      }
      if (matched != static_cast<int>(labels.size())) continue;
      if (found != nullptr) {
        ADD_FAILURE() << name << ": more than one series matches";
        return nullptr;
      }
      found = &m;
    }
    if (found == nullptr) ADD_FAILURE() << name << ": no series with the given labels";
    return found;
  }

  double Counter(const std::string& name, const LabelSet& labels = {}) const {
    const prometheus::ClientMetric* m = Series(name, labels);
    return m == nullptr ? -1 : m->counter.value;
  }
  double Gauge(const std::string& name, const LabelSet& labels = {}) const {
    const prometheus::ClientMetric* m = Series(name, labels);
    return m == nullptr ? -1 : m->gauge.value;
  }
  int64_t HistogramCount(const std::string& name, const LabelSet& labels = {}) const {
    const prometheus::ClientMetric* m = Series(name, labels);
    return m == nullptr ? -1 : static_cast<int64_t>(m->histogram.sample_count);
  }
  double HistogramSum(const std::string& name, const LabelSet& labels = {}) const {
    const prometheus::ClientMetric* m = Series(name, labels);
    return m == nullptr ? -1 : m->histogram.sample_sum;
  }
  // Observations <= `le` (the bucket must exist).
  int64_t BucketCount(const std::string& name, const LabelSet& labels, double le) const {
    const prometheus::ClientMetric* m = Series(name, labels);
    if (m == nullptr) return -1;
    for (const prometheus::ClientMetric::Bucket& b : m->histogram.bucket) {
      if (b.upper_bound == le) return static_cast<int64_t>(b.cumulative_count);
    }
    ADD_FAILURE() << name << ": no bucket le=" << le;
    return -1;
  }

 private:
  std::vector<prometheus::MetricFamily> families_;
};

}  // namespace conclave::server::testing

#endif  // CONCLAVE_TESTS_SERVER_METRICS_COLLECTED_H_
