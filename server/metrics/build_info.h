// What conclave_build_info says about this binary: the project version and
// the git commit it was configured from (both fixed by CMake at configure
// time; "unknown" when the source tree was not a git checkout, e.g. a
// Docker build without .git, unless -DCONCLAVE_GIT_COMMIT=... was given),
// and the backend that runs the model.
#ifndef CONCLAVE_SERVER_METRICS_BUILD_INFO_H_
#define CONCLAVE_SERVER_METRICS_BUILD_INFO_H_

#include <string>

namespace conclave::server {

struct BuildInfo {
  std::string version;
  std::string git_commit;
  std::string backend;  // kernels::Backend::name(): "cpu", "cuda"
};

BuildInfo CurrentBuild(std::string backend);

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_METRICS_BUILD_INFO_H_
