#include "tests/testing/gguf_writer.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "kernels/check.h"
#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"

namespace conclave::testing {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kDefaultAlignment = 32;

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// float -> IEEE half, round to nearest even; enough for the finite, modest
// values tests write (overflow saturates to the largest finite half).
uint16_t ToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (!(a < 65504.0f)) return sign | 0x7bff;
  if (a < 6.103515625e-05f) {  // subnormal half: multiples of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  uint32_t ax;
  std::memcpy(&ax, &a, 4);
  const uint32_t exp = (ax >> 23) - 127 + 15;
  uint32_t mant = ax & 0x7fffff;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // may carry into exp
  return sign | static_cast<uint16_t>(h);
}

uint16_t ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

void PutU16(std::string& s, size_t at, uint16_t v) { std::memcpy(&s[at], &v, 2); }

}  // namespace

uint64_t GgufTensorBytes(kernels::GgmlType type, const std::vector<int64_t>& dims) {
  CHECK(!dims.empty());
  const kernels::TypeTraits& t = kernels::TraitsOf(type);
  int64_t elements = 1;
  for (int64_t d : dims) elements *= d;
  CHECK_EQ(dims[0] % t.block_elems, 0)
      << "ne0 " << dims[0] << " is not whole " << t.name << " blocks";
  return static_cast<uint64_t>(elements / t.block_elems) * t.block_bytes;
}

void GgufWriter::AppendU32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void GgufWriter::AppendU64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}
void GgufWriter::AppendString(std::string& out, std::string_view s) {
  AppendU64(out, s.size());
  out.append(s);
}
void GgufWriter::PatchU64(std::string& image, uint64_t at, uint64_t v) {
  CHECK_LE(at + 8, image.size()) << "patch at " << at;
  std::memcpy(&image[at], &v, 8);
}
void GgufWriter::PatchU32(std::string& image, uint64_t at, uint32_t v) {
  CHECK_LE(at + 4, image.size()) << "patch at " << at;
  std::memcpy(&image[at], &v, 4);
}

GgufWriter& GgufWriter::SetVersion(uint32_t version) {
  version_ = version;
  return *this;
}

GgufWriter& GgufWriter::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  return AddUint32("general.alignment", alignment);
}

uint32_t GgufWriter::LayoutAlignment() const {
  const bool sane = alignment_ != 0 && (alignment_ & (alignment_ - 1)) == 0;
  return sane ? alignment_ : kDefaultAlignment;
}

GgufWriter& GgufWriter::AddUint8(std::string_view key, uint8_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddInt8(std::string_view key, int8_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddUint16(std::string_view key, uint16_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddInt16(std::string_view key, int16_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddUint32(std::string_view key, uint32_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddInt32(std::string_view key, int32_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddFloat32(std::string_view key, float v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddBool(std::string_view key, bool v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddUint64(std::string_view key, uint64_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddInt64(std::string_view key, int64_t v) { return AddScalar(key, v); }
GgufWriter& GgufWriter::AddFloat64(std::string_view key, double v) { return AddScalar(key, v); }

GgufWriter& GgufWriter::AddString(std::string_view key, std::string_view v) {
  std::string payload;
  AppendString(payload, v);
  return AddRawValue(key, static_cast<uint32_t>(ValueType::kString), payload);
}

GgufWriter& GgufWriter::AddStringArray(std::string_view key,
                                       const std::vector<std::string>& values) {
  std::string payload;
  AppendU32(payload, static_cast<uint32_t>(ValueType::kString));
  AppendU64(payload, values.size());
  for (const std::string& v : values) AppendString(payload, v);
  return AddRawValue(key, static_cast<uint32_t>(ValueType::kArray), payload);
}

GgufWriter& GgufWriter::AddRawValue(std::string_view key, uint32_t type_id,
                                    std::string_view encoded_value) {
  kvs_.push_back(Kv{std::string(key), type_id, std::string(encoded_value)});
  return *this;
}

GgufWriter& GgufWriter::AddTensor(std::string_view name, std::vector<int64_t> dims,
                                  GgmlType type, std::string_view data) {
  const uint64_t bytes = GgufTensorBytes(type, dims);
  CHECK_EQ(data.size(), bytes) << "tensor " << name << " of "
                               << kernels::TypeName(type);
  tensors_.push_back(Tensor{std::string(name), std::move(dims), type, std::string(data)});
  return *this;
}

GgufWriter& GgufWriter::AddZeroTensor(std::string_view name, std::vector<int64_t> dims,
                                      GgmlType type) {
  std::string zeros(GgufTensorBytes(type, dims), '\0');
  return AddTensor(name, std::move(dims), type, zeros);
}

GgufWriter& GgufWriter::AddF32Tensor(std::string_view name, std::vector<int64_t> dims,
                                     absl::Span<const float> values) {
  return AddTensor(name, std::move(dims), GgmlType::kF32,
                   std::string_view(reinterpret_cast<const char*>(values.data()),
                                    values.size() * sizeof(float)));
}

GgufWriter& GgufWriter::AddRandomTensor(std::string_view name, std::vector<int64_t> dims,
                                        GgmlType type, absl::BitGenRef gen, float scale) {
  const uint64_t bytes = GgufTensorBytes(type, dims);
  const kernels::TypeTraits& t = kernels::TraitsOf(type);
  std::string data(bytes, '\0');
  auto value = [&] { return absl::Uniform(gen, -scale, scale); };
  auto block_scale = [&] { return ToHalf(absl::Uniform(gen, 0.25f, 1.0f) * scale / 8); };
  if (type == GgmlType::kF32) {
    for (uint64_t i = 0; i < bytes; i += 4) {
      const float v = value();
      std::memcpy(&data[i], &v, 4);
    }
  } else if (type == GgmlType::kF16 || type == GgmlType::kBF16) {
    for (uint64_t i = 0; i < bytes; i += 2) {
      PutU16(data, i, type == GgmlType::kF16 ? ToHalf(value()) : ToBf16(value()));
    }
  } else {
    for (char& c : data) c = static_cast<char>(absl::Uniform<uint8_t>(gen));
    const size_t bb = t.block_bytes;
    for (size_t b = 0; b < bytes; b += bb) {
      // Scale fields per block layout (ggml-common.h); quants stay random.
      switch (type) {
        case GgmlType::kQ4_0:
        case GgmlType::kQ5_0:
        case GgmlType::kQ8_0:
          PutU16(data, b, block_scale());
          break;
        case GgmlType::kQ4_1:
        case GgmlType::kQ5_1:
        case GgmlType::kQ4_K:
        case GgmlType::kQ5_K:
          PutU16(data, b, block_scale());  // d
          PutU16(data, b + 2, block_scale());  // m / dmin
          break;
        case GgmlType::kQ8_1: {
          const float d = absl::Uniform(gen, 0.25f, 1.0f) * scale / 8;
          int sum = 0;
          for (int i = 0; i < 32; ++i) sum += static_cast<int8_t>(data[b + 4 + i]);
          PutU16(data, b, ToHalf(d));
          PutU16(data, b + 2, ToHalf(d * sum));
          break;
        }
        case GgmlType::kQ2_K:  // scales[16], qs[64], d, dmin
          PutU16(data, b + 80, block_scale());
          PutU16(data, b + 82, block_scale());
          break;
        case GgmlType::kQ3_K:  // hmask[32], qs[64], scales[12], d
          PutU16(data, b + 108, block_scale());
          break;
        case GgmlType::kQ6_K:  // ql[128], qh[64], scales[16], d
          PutU16(data, b + 208, block_scale());
          break;
        case GgmlType::kQ8_K: {  // f32 d, qs[256], bsums[16]
          const float d = absl::Uniform(gen, 0.25f, 1.0f) * scale / 128;
          std::memcpy(&data[b], &d, 4);
          for (int g = 0; g < 16; ++g) {
            int16_t sum = 0;
            for (int i = 0; i < 16; ++i) sum += static_cast<int8_t>(data[b + 4 + g * 16 + i]);
            std::memcpy(&data[b + 4 + 256 + 2 * g], &sum, 2);
          }
          break;
        }
        default:
          CHECK(false) << "AddRandomTensor: no layout for " << t.name;
      }
    }
  }
  return AddTensor(name, std::move(dims), type, data);
}

GgufImage GgufWriter::BuildWithLayout() const {
  GgufImage image;
  std::string& out = image.bytes;
  GgufLayout& layout = image.layout;
  const uint64_t alignment = LayoutAlignment();

  AppendU32(out, kMagic);
  AppendU32(out, version_);
  AppendU64(out, tensors_.size());
  AppendU64(out, kvs_.size());

  for (const Kv& kv : kvs_) {
    GgufLayout::Kv& l = layout.kvs.emplace_back();
    l.key = kv.key;
    l.key_at = out.size();
    AppendString(out, kv.key);
    l.type_at = out.size();
    AppendU32(out, kv.type_id);
    l.value_at = out.size();
    out.append(kv.value);
    l.end = out.size();
  }

  // Data offsets: each tensor starts on the next aligned offset.
  std::vector<uint64_t> offsets;
  uint64_t data_size = 0;
  for (const Tensor& t : tensors_) {
    data_size = AlignUp(data_size, alignment);
    offsets.push_back(data_size);
    data_size += t.data.size();
  }

  layout.infos_begin = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    GgufLayout::Tensor& l = layout.tensors.emplace_back();
    l.name = t.name;
    l.info_at = out.size();
    AppendString(out, t.name);
    l.n_dims_at = out.size();
    AppendU32(out, static_cast<uint32_t>(t.dims.size()));
    l.dims_at = out.size();
    for (int64_t d : t.dims) AppendU64(out, static_cast<uint64_t>(d));
    l.type_at = out.size();
    AppendU32(out, static_cast<uint32_t>(t.type));
    l.offset_at = out.size();
    AppendU64(out, offsets[i]);
    l.data_bytes = t.data.size();
  }
  layout.infos_end = out.size();

  layout.data_begin = AlignUp(out.size(), alignment);
  out.resize(layout.data_begin, '\0');
  for (size_t i = 0; i < tensors_.size(); ++i) {
    layout.tensors[i].data_at = layout.data_begin + offsets[i];
    out.resize(layout.tensors[i].data_at, '\0');
    out.append(tensors_[i].data);
  }
  layout.size = out.size();
  return image;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::string bytes = Build();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::UnavailableError(absl::StrCat("cannot create ", path));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

}  // namespace conclave::testing
