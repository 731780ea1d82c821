// MetricsExposer on 127.0.0.1: a free port, GET /metrics in the text
// format, and clear errors for a taken or invalid port.
#include "server/metrics/metrics_exposer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace conclave::server {
namespace {

using ::testing::HasSubstr;

// The response (headers and body) to GET `path` on 127.0.0.1:`port`; every
// socket operation gives up after 10 s.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
    }
  }
  close(fd);
  return response;
}

std::shared_ptr<prometheus::Registry> RegistryWithACounter(double value) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("conclave_test_events_total")
      .Help("test")
      .Register(*registry)
      .Add({{"model", "m"}})
      .Increment(value);
  return registry;
}

TEST(MetricsExposerTest, ServesTheCollectablesOnAFreePort) {
  auto registry = RegistryWithACounter(7);
  absl::StatusOr<std::unique_ptr<MetricsExposer>> exposer =
      MetricsExposer::Start("127.0.0.1", 0, {registry});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  const int port = (*exposer)->port();
  EXPECT_GT(port, 0);
  EXPECT_EQ((*exposer)->address(), "127.0.0.1:" + std::to_string(port));
  const std::string response = HttpGet(port, "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("# TYPE conclave_test_events_total counter"));
  EXPECT_THAT(response, HasSubstr("conclave_test_events_total{model=\"m\"} 7"));
}

TEST(MetricsExposerTest, ATakenPortIsUnavailableNamingTheAddress) {
  auto registry = RegistryWithACounter(1);
  absl::StatusOr<std::unique_ptr<MetricsExposer>> first =
      MetricsExposer::Start("127.0.0.1", 0, {registry});
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsExposer>> second =
      MetricsExposer::Start("127.0.0.1", (*first)->port(), {registry});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr((*first)->address()));
}

TEST(MetricsExposerTest, APortOutOfRangeIsInvalid) {
  auto registry = RegistryWithACounter(1);
  for (int port : {-1, 65536}) {
    absl::StatusOr<std::unique_ptr<MetricsExposer>> e =
        MetricsExposer::Start("127.0.0.1", port, {registry});
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(e.status().message(), HasSubstr("--metrics-port"));
  }
}

}  // namespace
}  // namespace conclave::server
