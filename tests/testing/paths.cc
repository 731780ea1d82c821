#include "tests/testing/paths.h"

#include <cstdlib>
#include <filesystem>

namespace conclave::testing {
namespace {

std::string ModelIfPresent(const char* file_name) {
  std::filesystem::path p = std::filesystem::path(SourceDir()) / "models" / file_name;
  return std::filesystem::exists(p) ? p.string() : std::string();
}

}  // namespace

std::string SourceDir() {
  const char* dir = std::getenv("CONCLAVE_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

std::string DefaultModelPath() {
  return ModelIfPresent("SmolLM2-135M-Instruct.Q4_1.gguf");
}

std::string GemmaModelPath() { return ModelIfPresent("gemma-3-270m-q4_k_m.gguf"); }

}  // namespace conclave::testing
