// Where tests find the source tree and the models that setup fetched.
#ifndef CONCLAVE_TESTS_TESTING_PATHS_H_
#define CONCLAVE_TESTS_TESTING_PATHS_H_

#include <string>

namespace conclave::testing {

// The repository root: $CONCLAVE_SOURCE_DIR (set by CTest), else ".".
std::string SourceDir();

// models/SmolLM2-135M-Instruct.Q4_1.gguf under the source dir, or "" when it
// has not been fetched (tests that need it then skip with that reason).
std::string DefaultModelPath();

// models/gemma-3-270m-q4_k_m.gguf, or "" when absent (optional model).
std::string GemmaModelPath();

}  // namespace conclave::testing

#endif  // CONCLAVE_TESTS_TESTING_PATHS_H_
