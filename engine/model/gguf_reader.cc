#include "engine/model/gguf_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"

namespace conclave::engine {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader assumes a little-endian host");

#define GGUF_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    if (absl::Status _st = (expr); !_st.ok()) {    \
      return _st;                                  \
    }                                              \
  } while (0)

// "GGUF" as a little-endian u32.
constexpr uint32_t kMagic = 0x46554747;
// Spec limits (ggml docs/gguf.md): names up to 64 bytes, up to 4 dims.
constexpr uint64_t kMaxTensorNameBytes = 64;
constexpr uint32_t kMaxDims = 4;
constexpr uint32_t kDefaultAlignment = 32;
// Nested arrays are legal but unused by any model; this bounds the recursion
// so that a file of nested array headers cannot exhaust the stack.
constexpr int kMaxArrayNesting = 8;
// Smallest encodings: a kv is a string length, a type and a 1-byte value; a
// tensor info is a name length, n_dims, one dim, a type and an offset.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint32_t kMaxValueType = static_cast<uint32_t>(GgufValueType::kFloat64);
// Caps up-front reservations so a bogus (but bounded) count cannot allocate
// much before the parse fails on the missing bytes.
constexpr uint64_t kMaxReserve = 1 << 16;

// Describes what is being read; only called to format an error.
using Describe = absl::FunctionRef<std::string()>;

std::string_view ValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "u8";
    case GgufValueType::kInt8: return "i8";
    case GgufValueType::kUint16: return "u16";
    case GgufValueType::kInt16: return "i16";
    case GgufValueType::kUint32: return "u32";
    case GgufValueType::kInt32: return "i32";
    case GgufValueType::kFloat32: return "f32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "u64";
    case GgufValueType::kInt64: return "i64";
    case GgufValueType::kFloat64: return "f64";
  }
  return "?";
}

// Bytes one value of `type` takes at least (exactly, for fixed-size types).
uint64_t MinValueBytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString: return 8;      // the length
    case GgufValueType::kArray: return 4 + 8;   // element type and count
  }
  return 1;
}

bool IsIntegerType(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64: return true;
    default: return false;
  }
}

// A bounds-checked, little-endian read position in the file image.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}

  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Truncated(uint64_t need, Describe what) const {
    return absl::DataLossError(absl::StrFormat(
        "gguf: truncated at offset %d reading %s (needs %d bytes, %d left)",
        pos_, what(), need, remaining()));
  }

  template <typename T>
  absl::Status Read(T* out, Describe what) {
    if (sizeof(T) > remaining()) return Truncated(sizeof(T), what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  // A GGUF string: u64 length, then that many bytes (no NUL).
  absl::Status ReadString(std::string* out, Describe what) {
    const uint64_t start = pos_;
    uint64_t len = 0;
    GGUF_RETURN_IF_ERROR(Read(&len, [&] { return absl::StrCat(what(), " length"); }));
    if (len > remaining()) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: string length %d at offset %d (%s) exceeds the %d bytes left in "
          "the file",
          len, start, what(), remaining()));
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

template <typename T>
absl::Status ReadInt(Cursor& c, int64_t* out, Describe what) {
  T v{};
  GGUF_RETURN_IF_ERROR(c.Read(&v, what));
  *out = static_cast<int64_t>(v);
  return absl::OkStatus();
}

// Reads the value type id at the cursor, rejecting ids beyond f64.
absl::Status ReadValueType(Cursor& c, GgufValueType* out, Describe what) {
  const uint64_t at = c.offset();
  uint32_t raw = 0;
  GGUF_RETURN_IF_ERROR(c.Read(&raw, what));
  if (raw > kMaxValueType) {
    return absl::DataLossError(absl::StrFormat(
        "gguf: unknown value type %d at offset %d (%s)", raw, at, what()));
  }
  *out = static_cast<GgufValueType>(raw);
  return absl::OkStatus();
}

absl::Status ReadValue(Cursor& c, GgufValueType type, GgufValue* out, int depth,
                       Describe what);

// Reads the element type, count and elements of an array value.
absl::Status ReadArray(Cursor& c, GgufValue* out, int depth, Describe what) {
  GGUF_RETURN_IF_ERROR(ReadValueType(
      c, &out->array_type, [&] { return absl::StrCat(what(), " array element type"); }));
  const uint64_t count_at = c.offset();
  uint64_t count = 0;
  GGUF_RETURN_IF_ERROR(
      c.Read(&count, [&] { return absl::StrCat(what(), " array count"); }));
  const uint64_t min_bytes = MinValueBytes(out->array_type);
  if (count > c.remaining() / min_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "gguf: array count %d at offset %d (%s, %s elements of at least %d bytes "
        "each) exceeds the %d bytes left in the file",
        count, count_at, what(), ValueTypeName(out->array_type), min_bytes,
        c.remaining()));
  }
  out->array_size = count;
  const uint64_t reserve = std::min(count, kMaxReserve);
  auto element = [&](uint64_t i) {
    return [&what, i] { return absl::StrCat(what(), " array element ", i); };
  };
  switch (out->array_type) {
    case GgufValueType::kString:
      out->strings.reserve(reserve);
      for (uint64_t i = 0; i < count; ++i) {
        std::string s;
        GGUF_RETURN_IF_ERROR(c.ReadString(&s, element(i)));
        out->strings.push_back(std::move(s));
      }
      return absl::OkStatus();
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64:
      out->floats.reserve(reserve);
      for (uint64_t i = 0; i < count; ++i) {
        double d = 0;
        if (out->array_type == GgufValueType::kFloat32) {
          float f = 0;
          GGUF_RETURN_IF_ERROR(c.Read(&f, element(i)));
          d = f;
        } else {
          GGUF_RETURN_IF_ERROR(c.Read(&d, element(i)));
        }
        out->floats.push_back(d);
      }
      return absl::OkStatus();
    case GgufValueType::kArray: {
      if (depth + 1 >= kMaxArrayNesting) {
        return absl::DataLossError(absl::StrFormat(
            "gguf: arrays nested more than %d deep at offset %d (%s)",
            kMaxArrayNesting, count_at, what()));
      }
      // Parsed for validation and skipped: no model uses nested arrays.
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue nested;
        nested.type = GgufValueType::kArray;
        GGUF_RETURN_IF_ERROR(ReadArray(c, &nested, depth + 1, element(i)));
      }
      return absl::OkStatus();
    }
    default: {  // integers and bools
      out->ints.reserve(reserve);
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue scalar;
        GGUF_RETURN_IF_ERROR(ReadValue(c, out->array_type, &scalar, depth + 1, element(i)));
        if (const auto* u = std::get_if<uint64_t>(&scalar.scalar)) {
          out->ints.push_back(static_cast<int64_t>(*u));  // u64 wraps
        } else {
          out->ints.push_back(std::get<int64_t>(scalar.scalar));
        }
      }
      return absl::OkStatus();
    }
  }
}

absl::Status ReadValue(Cursor& c, GgufValueType type, GgufValue* out, int depth,
                       Describe what) {
  out->type = type;
  int64_t i = 0;
  switch (type) {
    case GgufValueType::kUint8:
      GGUF_RETURN_IF_ERROR(ReadInt<uint8_t>(c, &i, what));
      out->scalar = static_cast<uint64_t>(i);
      return absl::OkStatus();
    case GgufValueType::kInt8:
      GGUF_RETURN_IF_ERROR(ReadInt<int8_t>(c, &i, what));
      out->scalar = i;
      return absl::OkStatus();
    case GgufValueType::kUint16:
      GGUF_RETURN_IF_ERROR(ReadInt<uint16_t>(c, &i, what));
      out->scalar = static_cast<uint64_t>(i);
      return absl::OkStatus();
    case GgufValueType::kInt16:
      GGUF_RETURN_IF_ERROR(ReadInt<int16_t>(c, &i, what));
      out->scalar = i;
      return absl::OkStatus();
    case GgufValueType::kUint32:
      GGUF_RETURN_IF_ERROR(ReadInt<uint32_t>(c, &i, what));
      out->scalar = static_cast<uint64_t>(i);
      return absl::OkStatus();
    case GgufValueType::kInt32:
      GGUF_RETURN_IF_ERROR(ReadInt<int32_t>(c, &i, what));
      out->scalar = i;
      return absl::OkStatus();
    case GgufValueType::kBool: {
      uint8_t b = 0;
      GGUF_RETURN_IF_ERROR(c.Read(&b, what));
      // Any nonzero byte is true, as in ggml; stored as 0/1.
      out->scalar = static_cast<uint64_t>(b != 0);
      return absl::OkStatus();
    }
    case GgufValueType::kUint64: {
      uint64_t u = 0;
      GGUF_RETURN_IF_ERROR(c.Read(&u, what));
      out->scalar = u;
      return absl::OkStatus();
    }
    case GgufValueType::kInt64:
      GGUF_RETURN_IF_ERROR(ReadInt<int64_t>(c, &i, what));
      out->scalar = i;
      return absl::OkStatus();
    case GgufValueType::kFloat32: {
      float f = 0;
      GGUF_RETURN_IF_ERROR(c.Read(&f, what));
      out->scalar = static_cast<double>(f);
      return absl::OkStatus();
    }
    case GgufValueType::kFloat64: {
      double d = 0;
      GGUF_RETURN_IF_ERROR(c.Read(&d, what));
      out->scalar = d;
      return absl::OkStatus();
    }
    case GgufValueType::kString: {
      std::string s;
      GGUF_RETURN_IF_ERROR(c.ReadString(&s, what));
      out->scalar = std::move(s);
      return absl::OkStatus();
    }
    case GgufValueType::kArray:
      return ReadArray(c, out, depth, what);
  }
  return absl::InternalError("gguf: unhandled value type");
}

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

}  // namespace

int64_t GgufTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

void GgufFile::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("gguf: no such file: ", path));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("gguf: cannot open ", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("gguf: cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: ", path, " is not a regular file"));
  }
  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    // MAP_POPULATE reads the file in and maps every page now, so the first
    // forward pass does not pay for ~25k page faults (llama.cpp prefetches too).
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat("gguf: cannot mmap ", path));
    }
    file->mapping_ = p;
    file->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  if (absl::Status s = file->Parse(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " [", path, "]"));
  }
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::string_view bytes) {
  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  if (!bytes.empty()) {
    void* p = nullptr;
    if (::posix_memalign(&p, 64, bytes.size()) != 0) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "gguf: cannot allocate %d bytes for an in-memory image", bytes.size()));
    }
    std::memcpy(p, bytes.data(), bytes.size());
    file->owned_.reset(static_cast<uint8_t*>(p));
    file->base_ = file->owned_.get();
    file->size_ = bytes.size();
  }
  GGUF_RETURN_IF_ERROR(file->Parse());
  return file;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

absl::Status GgufFile::Parse() {
  Cursor c(base_, size_);

  // Header.
  uint32_t magic = 0;
  GGUF_RETURN_IF_ERROR(c.Read(&magic, [] { return std::string("magic"); }));
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gguf: bad magic at offset 0: got 0x%08x, want 0x%08x (\"GGUF\")", magic,
        kMagic));
  }
  GGUF_RETURN_IF_ERROR(c.Read(&version_, [] { return std::string("version"); }));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gguf: unsupported version %d at offset 4 (supported: 2 and 3%s)",
        version_,
        version_ == 1 ? "; version 1 used 32-bit lengths"
        : version_ == 0x03000000 || version_ == 0x02000000
            ? "; this looks like a big-endian file"
            : ""));
  }
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
  GGUF_RETURN_IF_ERROR(c.Read(&n_tensors, [] { return std::string("tensor count"); }));
  GGUF_RETURN_IF_ERROR(c.Read(&n_kv, [] { return std::string("metadata kv count"); }));
  if (n_tensors > c.remaining() / kMinTensorInfoBytes) {
    return absl::DataLossError(absl::StrFormat(
        "gguf: tensor count %d at offset 8 cannot fit in the %d bytes after the "
        "header (a tensor info takes at least %d bytes): truncated or corrupt",
        n_tensors, c.remaining(), kMinTensorInfoBytes));
  }
  if (n_kv > c.remaining() / kMinKvBytes) {
    return absl::DataLossError(absl::StrFormat(
        "gguf: metadata kv count %d at offset 16 cannot fit in the %d bytes after "
        "the header (a kv takes at least %d bytes): truncated or corrupt",
        n_kv, c.remaining(), kMinKvBytes));
  }

  // Metadata.
  alignment_ = kDefaultAlignment;
  keys_.reserve(std::min(n_kv, kMaxReserve));
  values_.reserve(std::min(n_kv, kMaxReserve));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t kv_at = c.offset();
    std::string key;
    GGUF_RETURN_IF_ERROR(
        c.ReadString(&key, [&] { return absl::StrFormat("metadata kv %d key", i); }));
    if (values_.contains(key)) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: duplicate metadata key \"%s\" (metadata kv %d at offset %d)",
          absl::CHexEscape(key), i, kv_at));
    }
    auto what = [&] {
      return absl::StrFormat("metadata kv %d (%s)", i, absl::CHexEscape(key));
    };
    GgufValueType type;
    GGUF_RETURN_IF_ERROR(
        ReadValueType(c, &type, [&] { return absl::StrCat(what(), " value type"); }));
    const uint64_t value_at = c.offset();
    GgufValue value;
    GGUF_RETURN_IF_ERROR(ReadValue(c, type, &value, 0, what));
    if (key == "general.alignment") {
      if (type != GgufValueType::kUint32) {
        return absl::DataLossError(absl::StrFormat(
            "gguf: general.alignment at offset %d has type %s; must be u32",
            value_at, ValueTypeName(type)));
      }
      const uint64_t a = std::get<uint64_t>(value.scalar);
      if (a == 0 || (a & (a - 1)) != 0) {
        return absl::DataLossError(absl::StrFormat(
            "gguf: general.alignment %d at offset %d is not a nonzero power of two",
            a, value_at));
      }
      alignment_ = static_cast<uint32_t>(a);
    }
    keys_.push_back(key);
    values_.emplace(std::move(key), std::move(value));
  }

  // Tensor infos. Offsets are checked once the data section start is known.
  std::vector<uint64_t> offset_field_at;
  tensors_.reserve(std::min(n_tensors, kMaxReserve));
  offset_field_at.reserve(std::min(n_tensors, kMaxReserve));
  tensor_index_.reserve(std::min(n_tensors, kMaxReserve));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t info_at = c.offset();
    GgufTensorInfo info;
    GGUF_RETURN_IF_ERROR(c.ReadString(
        &info.name, [&] { return absl::StrFormat("tensor info %d name", i); }));
    auto what = [&](std::string_view field) {
      return [&info, i, field] {
        return absl::StrFormat("tensor info %d (%s) %s", i,
                               absl::CHexEscape(info.name), field);
      };
    };
    if (info.name.size() > kMaxTensorNameBytes) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: tensor info %d name at offset %d is %d bytes long; the limit is %d",
          i, info_at, info.name.size(), kMaxTensorNameBytes));
    }
    if (auto it = tensor_index_.find(info.name); it != tensor_index_.end()) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: duplicate tensor name \"%s\" (tensor info %d at offset %d; first "
          "seen as tensor info %d)",
          absl::CHexEscape(info.name), i, info_at, it->second));
    }
    const uint64_t n_dims_at = c.offset();
    uint32_t n_dims = 0;
    GGUF_RETURN_IF_ERROR(c.Read(&n_dims, what("n_dims")));
    if (n_dims < 1 || n_dims > kMaxDims) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: n_dims %d at offset %d (%s) must be 1..%d", n_dims, n_dims_at,
          what("n_dims")(), kMaxDims));
    }
    const uint64_t dims_at = c.offset();
    uint64_t raw_dims[kMaxDims] = {};
    if (c.remaining() < uint64_t{8} * n_dims) {
      return c.Truncated(uint64_t{8} * n_dims, what("dims"));
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      GGUF_RETURN_IF_ERROR(c.Read(&raw_dims[d], what("dims")));
      if (raw_dims[d] == 0 ||
          raw_dims[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::DataLossError(absl::StrFormat(
            "gguf: dim %d = %d at offset %d (%s) must be 1..2^63-1", d, raw_dims[d],
            dims_at + 8 * d, what("dims")()));
      }
      info.dims.push_back(static_cast<int64_t>(raw_dims[d]));
      if (__builtin_mul_overflow(elements, info.dims.back(), &elements)) {
        return absl::DataLossError(absl::StrFormat(
            "gguf: element count of dims %s at offset %d (%s) overflows int64",
            absl::StrJoin(absl::MakeConstSpan(raw_dims, d + 1), " x "), dims_at,
            what("dims")()));
      }
    }
    const uint64_t type_at = c.offset();
    uint32_t type_id = 0;
    GGUF_RETURN_IF_ERROR(c.Read(&type_id, what("type")));
    if (!kernels::IsKnownType(type_id)) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: unknown ggml type %d at offset %d (%s)", type_id, type_at,
          what("type")()));
    }
    info.type = static_cast<kernels::GgmlType>(type_id);
    const kernels::TypeTraits& traits = kernels::TraitsOf(info.type);
    if (info.dims[0] % traits.block_elems != 0) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: %s: ne0 %d of %s %s is not a multiple of the %s block size %d "
          "(type at offset %d)",
          what("type")(), info.dims[0], traits.name, DimsString(info.dims),
          traits.name, traits.block_elems, type_at));
    }
    const uint64_t blocks = static_cast<uint64_t>(elements / traits.block_elems);
    if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(traits.block_bytes),
                               &info.num_bytes)) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: byte size of %s %s overflows u64 (%s)", traits.name,
          DimsString(info.dims), what("type")()));
    }
    offset_field_at.push_back(c.offset());
    GGUF_RETURN_IF_ERROR(c.Read(&info.offset, what("data offset")));
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  // Data section: starts at the next multiple of the alignment. Cannot
  // overflow: the offset is at most the file size and alignment < 2^32.
  const uint64_t infos_end = c.offset();
  data_offset_ = (infos_end + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_bytes = data_offset_ <= size_ ? size_ - data_offset_ : 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorInfo& t = tensors_[i];
    if (t.offset % alignment_ != 0) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: tensor info %d (%s) data offset %d at offset %d is not a multiple "
          "of the alignment %d",
          i, absl::CHexEscape(t.name), t.offset, offset_field_at[i], alignment_));
    }
    if (data_offset_ > size_ || t.offset > data_bytes ||
        t.num_bytes > data_bytes - t.offset) {
      return absl::DataLossError(absl::StrFormat(
          "gguf: tensor info %d (%s) data offset %d at offset %d: its %d bytes run "
          "past the end of the file (data section at %d, file size %d)",
          i, absl::CHexEscape(t.name), t.offset, offset_field_at[i], t.num_bytes,
          data_offset_, size_));
    }
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  // Debian's Abseil has its own string_view type: convert for the look-up.
  auto it = values_.find(absl::string_view(key.data(), key.size()));
  return it == values_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || v->type != GgufValueType::kString) return std::nullopt;
  return std::get<std::string>(v->scalar);
}

std::optional<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || !IsIntegerType(v->type)) return std::nullopt;
  if (const auto* u = std::get_if<uint64_t>(&v->scalar)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(*u);
  }
  return std::get<int64_t>(v->scalar);
}

std::optional<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type == GgufValueType::kFloat32 || v->type == GgufValueType::kFloat64) {
    return std::get<double>(v->scalar);
  }
  if (!IsIntegerType(v->type)) return std::nullopt;
  if (const auto* u = std::get_if<uint64_t>(&v->scalar)) return static_cast<double>(*u);
  return static_cast<double>(std::get<int64_t>(v->scalar));
}

std::optional<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || v->type != GgufValueType::kBool) return std::nullopt;
  return std::get<uint64_t>(v->scalar) != 0;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(absl::string_view(name.data(), name.size()));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::TensorData(const GgufTensorInfo& info) const {
  return base_ + data_offset_ + info.offset;
}

#undef GGUF_RETURN_IF_ERROR

}  // namespace conclave::engine
