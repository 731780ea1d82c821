// The loopback rule of conclave-load: literals and "localhost" only (names
// other than localhost would need DNS, which the tests do not use).
#include "loadtest/load/target.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

using ::testing::HasSubstr;

TEST(TargetTest, ParsesHostAndPortWithBracketedIpv6) {
  absl::StatusOr<HostPort> hp = ParseTarget("127.0.0.1:50051");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 50051);
  hp = ParseTarget("[::1]:8080");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 8080);
}

TEST(TargetTest, RejectsWhatIsNotHostColonPort) {
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", ":50051", "::1:50051",
        "[::1]50051", "[::1", "dns:///localhost:50051", "unix:/tmp/sock"}) {
    EXPECT_EQ(ParseTarget(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(TargetTest, LoopbackAddressesAndLocalhostAreAllowed) {
  for (const char* ok : {"localhost:50051", "LOCALHOST:1", "127.0.0.1:50051", "127.1.2.3:9",
                         "[::1]:50051", "[::ffff:127.0.0.1]:50051"}) {
    EXPECT_TRUE(CheckLoopbackTarget(ok).ok()) << ok << ": " << CheckLoopbackTarget(ok);
  }
}

TEST(TargetTest, AnyOtherAddressIsRefusedWithTheRule) {
  for (const char* bad :
       {"10.0.0.1:50051", "0.0.0.0:50051", "192.168.1.10:50051", "128.0.0.1:50051", "[::]:50051",
        "[2001:db8::1]:50051", "[::ffff:10.0.0.1]:50051"}) {
    const absl::Status s = CheckLoopbackTarget(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("not a loopback address")) << bad;
  }
}

TEST(TargetTest, IsLoopbackLiteralNeedsAnAddressNotAName) {
  EXPECT_TRUE(IsLoopbackLiteral("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackLiteral("::1"));
  EXPECT_FALSE(IsLoopbackLiteral("localhost"));
  EXPECT_FALSE(IsLoopbackLiteral("10.1.1.1"));
}

}  // namespace
}  // namespace conclave::loadtest
