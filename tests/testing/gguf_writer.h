// Builds GGUF v3 images in memory (or on disk) for tests: metadata of every
// value type, tensors with their bytes, and a layout map saying where each
// field landed so a test can corrupt exactly one of them.
//
//   GgufWriter w;
//   w.AddString("general.architecture", "llama");
//   w.AddUint32("llama.block_count", 2);
//   w.AddArray<int32_t>("tokenizer.ggml.token_type", {1, 1, 3});
//   w.AddF32Tensor("output_norm.weight", {64}, weights);
//   std::string image = w.Build();
//
// The writer does not validate: duplicate keys, odd versions or raw values
// are written as asked, so tests can produce invalid files on purpose.
#ifndef CONCLAVE_TESTS_TESTING_GGUF_WRITER_H_
#define CONCLAVE_TESTS_TESTING_GGUF_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/gguf_reader.h"
#include "kernels/ggml_types.h"

namespace conclave::testing {

// Absolute byte offsets of the pieces of a built image.
struct GgufLayout {
  struct Kv {
    std::string key;
    uint64_t key_at = 0;    // the key's u64 length
    uint64_t type_at = 0;   // the u32 value type
    uint64_t value_at = 0;  // the value (for strings/arrays: their length/type)
    uint64_t end = 0;       // one past the value
  };
  struct Tensor {
    std::string name;
    uint64_t info_at = 0;    // the name's u64 length
    uint64_t n_dims_at = 0;  // u32 n_dims
    uint64_t dims_at = 0;    // u64 dims[n_dims]
    uint64_t type_at = 0;    // u32 ggml type
    uint64_t offset_at = 0;  // u64 data offset (relative to the data section)
    uint64_t data_at = 0;    // absolute position of the first data byte
    uint64_t data_bytes = 0;
  };
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  uint64_t infos_begin = 0;  // first tensor info
  uint64_t infos_end = 0;    // one past the last tensor info
  uint64_t data_begin = 0;   // aligned start of the data section
  uint64_t size = 0;         // whole image
};

struct GgufImage {
  std::string bytes;
  GgufLayout layout;
};

class GgufWriter {
 public:
  using ValueType = engine::GgufValueType;
  using GgmlType = kernels::GgmlType;

  // Header version (default 3). v2 has the same encoding.
  GgufWriter& SetVersion(uint32_t version);
  // Adds `general.alignment` (u32) and lays tensor data out on multiples of
  // `alignment`; without it the default 32 is used and no key is written.
  // Writing a value the reader rejects (0, 7) is allowed: the layout then
  // falls back to 32.
  GgufWriter& SetAlignment(uint32_t alignment);

  // Scalars, one per GGUF value type.
  GgufWriter& AddUint8(std::string_view key, uint8_t v);
  GgufWriter& AddInt8(std::string_view key, int8_t v);
  GgufWriter& AddUint16(std::string_view key, uint16_t v);
  GgufWriter& AddInt16(std::string_view key, int16_t v);
  GgufWriter& AddUint32(std::string_view key, uint32_t v);
  GgufWriter& AddInt32(std::string_view key, int32_t v);
  GgufWriter& AddFloat32(std::string_view key, float v);
  GgufWriter& AddBool(std::string_view key, bool v);
  GgufWriter& AddString(std::string_view key, std::string_view v);
  GgufWriter& AddUint64(std::string_view key, uint64_t v);
  GgufWriter& AddInt64(std::string_view key, int64_t v);
  GgufWriter& AddFloat64(std::string_view key, double v);

  // Arrays of a scalar type: T is one of uint8_t, int8_t, uint16_t, int16_t,
  // uint32_t, int32_t, uint64_t, int64_t, float, double, bool.
  //   w.AddArray<float>("tokenizer.ggml.scores", {0.0f, -1.5f});
  template <typename T>
  GgufWriter& AddArray(std::string_view key, const std::vector<T>& values) {
    std::string payload;
    AppendU32(payload, static_cast<uint32_t>(TypeOf<T>()));
    AppendU64(payload, values.size());
    for (const T& v : values) AppendScalar(payload, v);
    return AddRawValue(key, static_cast<uint32_t>(ValueType::kArray), payload);
  }
  GgufWriter& AddStringArray(std::string_view key,
                             const std::vector<std::string>& values);

  // Escape hatch: a kv whose type id and encoded value bytes are given as
  // is (e.g. nested arrays, an unknown type id, a lying length).
  GgufWriter& AddRawValue(std::string_view key, uint32_t type_id,
                          std::string_view encoded_value);

  // A tensor with its data. dims[0] is ne0 (the row length). `data` must be
  // exactly the tensor's size (CHECKed), since tests rely on exact layouts.
  GgufWriter& AddTensor(std::string_view name, std::vector<int64_t> dims,
                        GgmlType type, std::string_view data);
  // Same, zero-filled.
  GgufWriter& AddZeroTensor(std::string_view name, std::vector<int64_t> dims,
                            GgmlType type);
  GgufWriter& AddF32Tensor(std::string_view name, std::vector<int64_t> dims,
                           absl::Span<const float> values);
  // Random but numerically sane contents, for tiny random-weight models:
  // F32 values uniform in [-scale, scale]; F16/BF16 the same, rounded;
  // quantized types random quants with block scales of about scale/8 (the
  // scale fields are finite halves, never NaN/Inf).
  GgufWriter& AddRandomTensor(std::string_view name, std::vector<int64_t> dims,
                              GgmlType type, absl::BitGenRef gen,
                              float scale = 1.0f);

  std::string Build() const { return BuildWithLayout().bytes; }
  GgufImage BuildWithLayout() const;
  absl::Status WriteFile(const std::string& path) const;

  // Little-endian encoders, for hand-made values and patches.
  static void AppendU32(std::string& out, uint32_t v);
  static void AppendU64(std::string& out, uint64_t v);
  static void AppendString(std::string& out, std::string_view s);
  // Overwrites bytes [at, at+8) / [at, at+4) of `image` (CHECKs the bounds).
  static void PatchU64(std::string& image, uint64_t at, uint64_t v);
  static void PatchU32(std::string& image, uint64_t at, uint32_t v);

 private:
  struct Kv {
    std::string key;
    uint32_t type_id;
    std::string value;  // encoded
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    GgmlType type;
    std::string data;
  };

  template <typename T>
  static constexpr ValueType TypeOf() {
    if constexpr (std::is_same_v<T, bool>) return ValueType::kBool;
    else if constexpr (std::is_same_v<T, uint8_t>) return ValueType::kUint8;
    else if constexpr (std::is_same_v<T, int8_t>) return ValueType::kInt8;
    else if constexpr (std::is_same_v<T, uint16_t>) return ValueType::kUint16;
    else if constexpr (std::is_same_v<T, int16_t>) return ValueType::kInt16;
    else if constexpr (std::is_same_v<T, uint32_t>) return ValueType::kUint32;
    else if constexpr (std::is_same_v<T, int32_t>) return ValueType::kInt32;
    else if constexpr (std::is_same_v<T, uint64_t>) return ValueType::kUint64;
    else if constexpr (std::is_same_v<T, int64_t>) return ValueType::kInt64;
    else if constexpr (std::is_same_v<T, float>) return ValueType::kFloat32;
    else if constexpr (std::is_same_v<T, double>) return ValueType::kFloat64;
    else static_assert(sizeof(T) == 0, "not a GGUF scalar type");
  }
  template <typename T>
  static void AppendScalar(std::string& out, T v) {
    if constexpr (std::is_same_v<T, bool>) {
      out.push_back(v ? 1 : 0);
    } else {
      out.append(reinterpret_cast<const char*>(&v), sizeof(T));
    }
  }
  template <typename T>
  GgufWriter& AddScalar(std::string_view key, T v) {
    std::string payload;
    AppendScalar(payload, v);
    return AddRawValue(key, static_cast<uint32_t>(TypeOf<T>()), payload);
  }
  uint32_t LayoutAlignment() const;

  uint32_t version_ = 3;
  uint32_t alignment_ = 0;  // 0: default, no key written
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

// Bytes a tensor of `type` with `dims` takes (ne0 must be whole blocks).
uint64_t GgufTensorBytes(kernels::GgmlType type, const std::vector<int64_t>& dims);

}  // namespace conclave::testing

#endif  // CONCLAVE_TESTS_TESTING_GGUF_WRITER_H_
