// Reads a GGUF (v2/v3) model file: header, metadata key/values, tensor infos,
// and the tensor data, memory-mapped read-only. Every length, count, offset
// and type id read from the file is checked against the file size and the
// format's limits before use, so a truncated or corrupted file yields a clear
// error (naming the offset and what was wrong), never a crash.
// Format: ggml docs/gguf.md (see ../shared/REFERENCE.md section 1).
// Thread-safety: immutable after Open; safe to read from many threads.
#ifndef CONCLAVE_ENGINE_MODEL_GGUF_READER_H_
#define CONCLAVE_ENGINE_MODEL_GGUF_READER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ggml_types.h"

namespace conclave::engine {

// GGUF metadata value types (gguf_type).
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10,
  kInt64 = 11, kFloat64 = 12,
};

// One metadata value. Scalars of every integer width are widened to int64 /
// uint64 (bool to uint64 0/1); arrays keep their element type and hold their
// elements in the matching vector (nested arrays are parsed and skipped:
// `array_type` is kArray and no elements are kept).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  std::variant<uint64_t, int64_t, double, std::string> scalar;
  // For kArray only.
  GgufValueType array_type = GgufValueType::kUint8;
  uint64_t array_size = 0;
  std::vector<std::string> strings;  // string arrays
  std::vector<int64_t> ints;         // any integer / bool array
  std::vector<double> floats;        // f32 / f64 arrays
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // dims[0] = ne0, the contiguous (row) length
  kernels::GgmlType type = kernels::GgmlType::kF32;
  uint64_t offset = 0;        // relative to the data section
  uint64_t num_bytes = 0;
  int64_t num_elements() const;
};

class GgufFile {
 public:
  // Opens and validates `path`. Errors: NOT_FOUND (no such file),
  // INVALID_ARGUMENT / DATA_LOSS with the offset and field that is wrong
  // (bad magic, unsupported version, truncated header/metadata/tensor info,
  // string or array length beyond the file, unknown value or tensor type,
  // too many dims, tensor data out of bounds or misaligned, duplicate keys or
  // tensor names).
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Same checks over an in-memory image (the bytes are copied).
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::string_view bytes);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }

  // Metadata look-ups. nullptr / nullopt when the key is absent or has
  // another type; the typed getters accept any integer width.
  const GgufValue* Find(std::string_view key) const;
  std::optional<std::string> GetString(std::string_view key) const;
  std::optional<int64_t> GetInt(std::string_view key) const;
  std::optional<double> GetFloat(std::string_view key) const;  // f32/f64/int
  std::optional<bool> GetBool(std::string_view key) const;
  const std::vector<std::string>& metadata_keys() const { return keys_; }

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // Pointer to the first byte of a tensor's data (mapped read-only; valid for
  // the lifetime of this object).
  const uint8_t* TensorData(const GgufTensorInfo& info) const;

 private:
  GgufFile() = default;
  absl::Status Parse();

  // Frees FromBytes' copy (allocated with posix_memalign).
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };

  const uint8_t* base_ = nullptr;  // whole file
  size_t size_ = 0;
  void* mapping_ = nullptr;        // mmap region, or nullptr for owned bytes
  // FromBytes copy, 64-byte aligned like a mapping so tensor data is aligned.
  std::unique_ptr<uint8_t, FreeDeleter> owned_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::string, GgufValue> values_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_MODEL_GGUF_READER_H_
