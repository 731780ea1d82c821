#include "server/metrics/build_info.h"

#include <utility>

// Set by server/CMakeLists.txt on this file only, so that a new commit
// recompiles one file.
#ifndef CONCLAVE_VERSION
#define CONCLAVE_VERSION "unknown"
#endif
#ifndef CONCLAVE_GIT_COMMIT
#define CONCLAVE_GIT_COMMIT "unknown"
#endif

namespace conclave::server {

BuildInfo CurrentBuild(std::string backend) {
  return BuildInfo{CONCLAVE_VERSION, CONCLAVE_GIT_COMMIT, std::move(backend)};
}

}  // namespace conclave::server
