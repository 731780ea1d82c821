// Open mode (no keys) only on loopback addresses.
#include "server/auth/open_mode.h"

#include <string>

#include "gtest/gtest.h"

namespace conclave::server::auth {
namespace {

TEST(OpenModeTest, IsAllowedOnLoopbackAddresses) {
  for (const char* address : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                              "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", " 127.0.0.1 "}) {
    EXPECT_TRUE(CheckOpenModeAllowed(address).ok()) << address;
  }
}

TEST(OpenModeTest, IsRefusedEverywhereElse) {
  for (const char* address :
       {"0.0.0.0", "::", "[::]", "10.0.0.1", "192.168.1.10", "128.0.0.1", "::ffff:10.0.0.1", "::2",
        "example.com", "localhost.example.com", "", "127.0.0.1:50051"}) {
    const absl::Status s = CheckOpenModeAllowed(address);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << address;
    EXPECT_NE(std::string(s.message()).find(std::string("\"") + address + "\""), std::string::npos)
        << s;
    EXPECT_NE(std::string(s.message()).find("loopback"), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace conclave::server::auth
