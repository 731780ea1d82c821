#include "kernels/ggml_types.h"

#include "kernels/check.h"

namespace conclave::kernels {
namespace {

struct Entry {
  uint32_t id;
  TypeTraits traits;
};

constexpr Entry kTable[] = {
    {0, {"F32", 1, 4}},      {1, {"F16", 1, 2}},      {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},   {6, {"Q5_0", 32, 22}},   {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},   {9, {"Q8_1", 32, 36}},   {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}}, {12, {"Q4_K", 256, 144}}, {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}}, {15, {"Q8_K", 256, 292}}, {30, {"BF16", 1, 2}},
};

}  // namespace

bool IsKnownType(uint32_t type_id) {
  for (const Entry& e : kTable) {
    if (e.id == type_id) return true;
  }
  return false;
}

const TypeTraits& TraitsOf(GgmlType type) {
  for (const Entry& e : kTable) {
    if (e.id == static_cast<uint32_t>(type)) return e.traits;
  }
  CHECK(false) << "unknown ggml type id " << static_cast<uint32_t>(type);
  __builtin_unreachable();
}

const char* TypeName(GgmlType type) { return TraitsOf(type).name; }

size_t RowBytes(GgmlType type, int64_t elems) {
  const TypeTraits& t = TraitsOf(type);
  CHECK_EQ(elems % t.block_elems, 0)
      << "row of " << elems << " elements is not whole " << t.name << " blocks";
  return static_cast<size_t>(elems / t.block_elems) * t.block_bytes;
}

}  // namespace conclave::kernels
