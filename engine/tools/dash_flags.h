// Lets the command-line tools take GNU-style flag names (--max-tokens) as
// well as Abseil's (--max_tokens): rewrites dashes inside flag names to
// underscores before absl::ParseCommandLine sees them. Values are untouched.
#ifndef CONCLAVE_ENGINE_TOOLS_DASH_FLAGS_H_
#define CONCLAVE_ENGINE_TOOLS_DASH_FLAGS_H_

#include <cstring>
#include <string>
#include <vector>

namespace conclave::tools {

// Rewrites argv in place (the strings are owned by `storage`). Stops at "--".
inline void NormalizeFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.reserve(argc);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() > 2 && arg[0] == '-') {
      const size_t start = arg[1] == '-' ? 2 : 1;
      const size_t end = std::min(arg.find('='), arg.size());
      for (size_t j = start; j < end; ++j) {
        if (arg[j] == '-') arg[j] = '_';
      }
      storage.push_back(arg);
      argv[i] = storage.back().data();
    }
  }
}

}  // namespace conclave::tools

#endif  // CONCLAVE_ENGINE_TOOLS_DASH_FLAGS_H_
