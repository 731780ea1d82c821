#include "kernels/backend.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace conclave::kernels {

const char* KvDtypeName(KvDtype dtype) { return dtype == KvDtype::kBF16 ? "bf16" : "fp16"; }

absl::StatusOr<KvDtype> ParseKvDtype(std::string_view name) {
  if (name == "fp16" || name == "f16") return KvDtype::kF16;
  if (name == "bf16") return KvDtype::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("kv dtype \"", std::string(name), "\" is not one of fp16, bf16"));
}

}  // namespace conclave::kernels
