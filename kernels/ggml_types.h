// Tensor element types as GGUF files name them (ggml_type ids), with the
// block layouts of the quantized ones. Source: ggml/src/ggml-common.h and
// ggml docs/gguf.md (see ../shared/REFERENCE.md sections 1-2).
#ifndef CONCLAVE_KERNELS_GGML_TYPES_H_
#define CONCLAVE_KERNELS_GGML_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace conclave::kernels {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

using Half = uint16_t;  // IEEE binary16 bits
using BHalf = uint16_t; // bfloat16 bits (top half of an f32)

// Elements per quantized block of 32.
inline constexpr int kQK = 32;
// Elements per K-quant super-block.
inline constexpr int kQKK = 256;

struct BlockQ4_0 {
  Half d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  Half d;
  Half m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// The fifth bit of element j is bit j of qh (read as a little-endian u32).
struct BlockQ5_0 {
  Half d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  Half d;
  Half m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockQ8_0 {
  Half d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ8_1 {
  Half d;
  Half s;  // d * sum(qs)
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36);

struct BlockQ4_K {
  Half d;
  Half dmin;
  uint8_t scales[12];  // 8 x (6-bit scale, 6-bit min), packed
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ6_K {
  uint8_t ql[kQKK / 2];      // low 4 bits
  uint8_t qh[kQKK / 4];      // high 2 bits
  int8_t scales[kQKK / 16];  // 8-bit scale per 16 elements
  Half d;
};
static_assert(sizeof(BlockQ6_K) == 210);

struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];  // sums of qs in groups of 16
};
static_assert(sizeof(BlockQ8_K) == 292);

// Facts about one type. `block_elems` is 1 for F32/F16/BF16.
struct TypeTraits {
  const char* name;
  int block_elems;
  int block_bytes;
};

// Returns false for ids this build does not know (e.g. a newer ggml type).
bool IsKnownType(uint32_t type_id);
// Precondition: IsKnownType(type).
const TypeTraits& TraitsOf(GgmlType type);
const char* TypeName(GgmlType type);
// Bytes of a row of `elems` elements; elems must be a multiple of block_elems.
size_t RowBytes(GgmlType type, int64_t elems);

}  // namespace conclave::kernels

#endif  // CONCLAVE_KERNELS_GGML_TYPES_H_
