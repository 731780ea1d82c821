#include "engine/model/model.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace conclave::engine {
namespace {

absl::Status Annotate(const absl::Status& s, const std::string& path) {
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path) {
  std::unique_ptr<Model> model(new Model());
  model->path_ = path;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();  // the reader names the path
  model->file_ = *std::move(file);
  absl::StatusOr<LoadedModelSpec> spec = LoadModelSpec(*model->file_);
  if (!spec.ok()) return Annotate(spec.status(), path);
  model->spec_ = *std::move(spec);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromGguf(*model->file_);
  if (!tokenizer.ok()) return Annotate(tokenizer.status(), path);
  model->tokenizer_ = *std::move(tokenizer);
  model->name_ = model->file_->GetString("general.name")
                     .value_or(std::filesystem::path(path).filename().string());
  return model;
}

}  // namespace conclave::engine
