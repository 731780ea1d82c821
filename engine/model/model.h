// A loaded model: the memory-mapped GGUF file, its architecture spec (config
// and weight views) and its tokenizer. Immutable after Load; shared by every
// component that needs the model.
#ifndef CONCLAVE_ENGINE_MODEL_MODEL_H_
#define CONCLAVE_ENGINE_MODEL_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/gguf_reader.h"
#include "engine/model/model_loader.h"
#include "engine/tokenizer/tokenizer.h"

namespace conclave::engine {

class Model {
 public:
  // Opens `path`, reads the architecture and builds the tokenizer. Errors
  // name the file and what is wrong with it.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path);

  const std::string& path() const { return path_; }
  // general.name, or the file name.
  const std::string& name() const { return name_; }
  const GgufFile& file() const { return *file_; }
  const kernels::ModelConfig& config() const { return spec_.config; }
  const kernels::ModelWeights& weights() const { return spec_.weights; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  Model() = default;

  std::string path_;
  std::string name_;
  std::unique_ptr<GgufFile> file_;
  LoadedModelSpec spec_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_MODEL_MODEL_H_
