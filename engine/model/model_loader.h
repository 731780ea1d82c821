// Turns an opened GGUF file into what a backend runs: the model's
// hyperparameters (ModelConfig) and views of its weight tensors
// (ModelWeights), checking that every tensor the architecture needs is there
// with the right shape. Supported: general.architecture "llama" and "gemma3".
#ifndef CONCLAVE_ENGINE_MODEL_MODEL_LOADER_H_
#define CONCLAVE_ENGINE_MODEL_MODEL_LOADER_H_

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"
#include "kernels/model_spec.h"

namespace conclave::engine {

struct LoadedModelSpec {
  kernels::ModelConfig config;
  kernels::ModelWeights weights;  // views into the GgufFile's mapping
};

// INVALID_ARGUMENT naming the key or tensor when the file lacks something,
// has an unsupported architecture, or shapes that disagree with the metadata.
// The returned views are valid while `file` lives.
absl::StatusOr<LoadedModelSpec> LoadModelSpec(const GgufFile& file);

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_MODEL_MODEL_LOADER_H_
