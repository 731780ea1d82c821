#include "engine/model/gguf_reader.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/ggml_types.h"
#include "tests/testing/gguf_writer.h"
#include "tests/testing/paths.h"

namespace conclave::engine {
namespace {

using ::conclave::testing::GgufImage;
using ::conclave::testing::GgufTensorBytes;
using ::conclave::testing::GgufWriter;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using kernels::GgmlType;

constexpr uint64_t kTwoTo63 = uint64_t{1} << 63;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A small image with metadata of several types and tensors of several types
// (awkward sizes so padding is exercised).
GgufWriter SampleWriter() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddBool("tokenizer.ggml.add_bos_token", true);
  w.AddStringArray("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b"});
  w.AddArray<int32_t>("tokenizer.ggml.token_type", {3, 3, 1, 1});
  w.AddArray<float>("tokenizer.ggml.scores", {0.0f, 0.0f, -1.0f, -2.0f});
  w.AddTensor("token_embd.weight", {32, 3}, GgmlType::kQ8_0,
              RandomBytes(GgufTensorBytes(GgmlType::kQ8_0, {32, 3}), 1));
  w.AddTensor("output_norm.weight", {7}, GgmlType::kF32,
              RandomBytes(GgufTensorBytes(GgmlType::kF32, {7}), 2));
  w.AddTensor("blk.0.attn_q.weight", {64, 2}, GgmlType::kQ4_1,
              RandomBytes(GgufTensorBytes(GgmlType::kQ4_1, {64, 2}), 3));
  w.AddTensor("blk.0.ffn_up.weight", {5, 3, 2}, GgmlType::kF16,
              RandomBytes(GgufTensorBytes(GgmlType::kF16, {5, 3, 2}), 4));
  return w;
}

GgufImage SampleImage() { return SampleWriter().BuildWithLayout(); }

absl::Status ParseStatus(std::string_view bytes) {
  return GgufFile::FromBytes(bytes).status();
}

// Reads every data byte of every tensor (ASan flags any that lie outside the
// image) and checks the sizes agree with the shapes.
void ExpectTensorsInsideImage(const GgufFile& f, size_t image_size) {
  for (const GgufTensorInfo& t : f.tensors()) {
    ASSERT_LE(t.num_bytes, image_size) << t.name;
    ASSERT_EQ(t.num_bytes, GgufTensorBytes(t.type, t.dims)) << t.name;
    const uint8_t* p = f.TensorData(t);
    unsigned sum = 0;
    for (uint64_t i = 0; i < t.num_bytes; ++i) sum += p[i];
    (void)sum;
  }
}

// ---------------------------------------------------------------------------
// Round trips.

TEST(GgufReaderTest, RoundTripsAScalarOfEveryValueType) {
  GgufWriter w;
  w.AddUint8("u8", 250)
      .AddInt8("i8", -120)
      .AddUint16("u16", 65000)
      .AddInt16("i16", -32000)
      .AddUint32("u32", 4000000000u)
      .AddInt32("i32", -2000000000)
      .AddFloat32("f32", 0.25f)
      .AddBool("bool", true)
      .AddString("string", "héllo")
      .AddUint64("u64", 1ull << 40)
      .AddInt64("i64", -(1ll << 40))
      .AddFloat64("f64", 1e-300);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.GetInt("u8"), 250);
  EXPECT_EQ(g.GetInt("i8"), -120);
  EXPECT_EQ(g.GetInt("u16"), 65000);
  EXPECT_EQ(g.GetInt("i16"), -32000);
  EXPECT_EQ(g.GetInt("u32"), 4000000000ll);
  EXPECT_EQ(g.GetInt("i32"), -2000000000);
  EXPECT_EQ(g.GetFloat("f32"), 0.25);
  EXPECT_EQ(g.GetBool("bool"), true);
  EXPECT_EQ(g.GetString("string"), "héllo");
  EXPECT_EQ(g.GetInt("u64"), 1ll << 40);
  EXPECT_EQ(g.GetInt("i64"), -(1ll << 40));
  EXPECT_EQ(g.GetFloat("f64"), 1e-300);
  EXPECT_EQ(g.Find("u8")->type, GgufValueType::kUint8);
  EXPECT_EQ(g.Find("f64")->type, GgufValueType::kFloat64);
  EXPECT_EQ(std::get<uint64_t>(g.Find("bool")->scalar), 1u);
  EXPECT_THAT(g.metadata_keys(), ElementsAre("u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                             "bool", "string", "u64", "i64", "f64"));
  EXPECT_TRUE(g.tensors().empty());
}

TEST(GgufReaderTest, TypedGettersAcceptAnyIntegerWidthAndRefuseOtherTypes) {
  GgufWriter w;
  w.AddUint64("huge", std::numeric_limits<uint64_t>::max())
      .AddInt16("small", -5)
      .AddString("name", "x")
      .AddBool("flag", false);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.GetInt("huge"), std::nullopt);  // does not fit in int64
  EXPECT_EQ(g.GetFloat("small"), -5.0);
  EXPECT_EQ(g.GetInt("name"), std::nullopt);
  EXPECT_EQ(g.GetString("small"), std::nullopt);
  EXPECT_EQ(g.GetBool("small"), std::nullopt);
  EXPECT_EQ(g.GetBool("flag"), false);
  EXPECT_EQ(g.GetInt("missing"), std::nullopt);
  EXPECT_EQ(g.Find("missing"), nullptr);
}

TEST(GgufReaderTest, RoundTripsArraysOfEveryElementType) {
  GgufWriter w;
  w.AddArray<uint8_t>("u8", {0, 255})
      .AddArray<int8_t>("i8", {-128, 127})
      .AddArray<uint16_t>("u16", {65535})
      .AddArray<int16_t>("i16", {-32768, 1})
      .AddArray<uint32_t>("u32", {4294967295u, 0})
      .AddArray<int32_t>("i32", {-1, 2, -3})
      .AddArray<float>("f32", {1.5f, -0.5f})
      .AddArray<bool>("bool", {true, false, true})
      .AddStringArray("string", {"", "a b", std::string("\0x", 2)})
      .AddArray<uint64_t>("u64", {1ull << 50})
      .AddArray<int64_t>("i64", {-(1ll << 50)})
      .AddArray<double>("f64", {0.1})
      .AddArray<int32_t>("empty", {});
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  auto arr = [&](std::string_view key) -> const GgufValue& {
    const GgufValue* v = g.Find(key);
    EXPECT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, GgufValueType::kArray) << key;
    return *v;
  };
  EXPECT_THAT(arr("u8").ints, ElementsAre(0, 255));
  EXPECT_EQ(arr("u8").array_type, GgufValueType::kUint8);
  EXPECT_THAT(arr("i8").ints, ElementsAre(-128, 127));
  EXPECT_THAT(arr("u16").ints, ElementsAre(65535));
  EXPECT_THAT(arr("i16").ints, ElementsAre(-32768, 1));
  EXPECT_THAT(arr("u32").ints, ElementsAre(4294967295ll, 0));
  EXPECT_THAT(arr("i32").ints, ElementsAre(-1, 2, -3));
  EXPECT_EQ(arr("i32").array_size, 3u);
  EXPECT_THAT(arr("f32").floats, ElementsAre(1.5, -0.5));
  EXPECT_THAT(arr("bool").ints, ElementsAre(1, 0, 1));
  EXPECT_EQ(arr("bool").array_type, GgufValueType::kBool);
  EXPECT_THAT(arr("string").strings, ElementsAre("", "a b", std::string("\0x", 2)));
  EXPECT_THAT(arr("u64").ints, ElementsAre(1ll << 50));
  EXPECT_THAT(arr("i64").ints, ElementsAre(-(1ll << 50)));
  EXPECT_THAT(arr("f64").floats, ElementsAre(0.1));
  EXPECT_EQ(arr("empty").array_size, 0u);
  EXPECT_TRUE(arr("empty").ints.empty());
}

// An array of `count` arrays of two u16 each, nested `depth` levels deep.
std::string NestedArray(int depth) {
  std::string inner;
  GgufWriter::AppendU32(inner, static_cast<uint32_t>(GgufValueType::kUint16));
  GgufWriter::AppendU64(inner, 2);
  inner.append("\x01\x00\x02\x00", 4);
  for (int d = 1; d < depth; ++d) {
    std::string outer;
    GgufWriter::AppendU32(outer, static_cast<uint32_t>(GgufValueType::kArray));
    GgufWriter::AppendU64(outer, 2);
    outer += inner;
    outer += inner;
    inner = outer;
  }
  return inner;
}

TEST(GgufReaderTest, ParsesAndSkipsNestedArrays) {
  GgufWriter w;
  w.AddRawValue("nested", static_cast<uint32_t>(GgufValueType::kArray), NestedArray(3))
      .AddUint32("after", 7);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufValue* v = (*f)->Find("nested");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->array_type, GgufValueType::kArray);
  EXPECT_EQ(v->array_size, 2u);
  EXPECT_TRUE(v->ints.empty());
  EXPECT_EQ((*f)->GetInt("after"), 7);
}

TEST(GgufReaderTest, RejectsArraysNestedTooDeeply) {
  GgufWriter w;
  w.AddRawValue("nested", static_cast<uint32_t>(GgufValueType::kArray), NestedArray(12));
  absl::Status s = ParseStatus(w.Build());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("nested more than"));
}

TEST(GgufReaderTest, RoundTripsTensorInfosAndDataOfEveryKnownType) {
  const GgmlType kTypes[] = {
      GgmlType::kF32,  GgmlType::kF16,  GgmlType::kQ4_0, GgmlType::kQ4_1,
      GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ8_1,
      GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K,
      GgmlType::kQ6_K, GgmlType::kQ8_K, GgmlType::kBF16};
  GgufWriter w;
  std::map<std::string, std::string> data;
  uint32_t seed = 0;
  for (GgmlType type : kTypes) {
    const int block = kernels::TraitsOf(type).block_elems;
    const std::string name = absl::StrCat("t.", kernels::TypeName(type));
    const std::vector<int64_t> dims = {block * 2, 3};
    data[name] = RandomBytes(GgufTensorBytes(type, dims), ++seed);
    w.AddTensor(name, dims, type, data[name]);
  }
  const GgufImage image = w.BuildWithLayout();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(image.bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), std::size(kTypes));
  for (size_t i = 0; i < std::size(kTypes); ++i) {
    const GgufTensorInfo& t = (*f)->tensors()[i];
    EXPECT_EQ(t.type, kTypes[i]);
    EXPECT_EQ(t.dims[1], 3);
    EXPECT_EQ(t.num_elements(), t.dims[0] * 3);
    EXPECT_EQ(t.num_bytes, data[t.name].size());
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(t.offset, image.layout.tensors[i].data_at - image.layout.data_begin);
    EXPECT_EQ(std::memcmp((*f)->TensorData(t), data[t.name].data(), t.num_bytes), 0)
        << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->TensorData(t)) % 32, 0u) << t.name;
    EXPECT_EQ((*f)->FindTensor(t.name), &t);
  }
  EXPECT_EQ((*f)->FindTensor("absent"), nullptr);
}

TEST(GgufReaderTest, AcceptsUpToFourDimsAndAnExactly64ByteName) {
  GgufWriter w;
  const std::string name(64, 'n');
  w.AddZeroTensor(name, {2, 3, 4, 5}, GgmlType::kF16);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->tensors()[0].dims, ElementsAre(2, 3, 4, 5));
  EXPECT_EQ((*f)->tensors()[0].num_elements(), 120);
  EXPECT_EQ((*f)->tensors()[0].num_bytes, 240u);
}

TEST(GgufReaderTest, LaysDataOutOnTheGeneralAlignment) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    GgufWriter w = SampleWriter();
    w.SetAlignment(alignment);
    const GgufImage image = w.BuildWithLayout();
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(image.bytes);
    ASSERT_TRUE(f.ok()) << "alignment " << alignment << ": " << f.status();
    EXPECT_EQ((*f)->alignment(), alignment);
    EXPECT_EQ((*f)->GetInt("general.alignment"), alignment);
    for (size_t i = 0; i < image.layout.tensors.size(); ++i) {
      const GgufTensorInfo& t = (*f)->tensors()[i];
      EXPECT_EQ(t.offset % alignment, 0u);
      EXPECT_EQ(std::memcmp((*f)->TensorData(t), image.bytes.data() + image.layout.tensors[i].data_at,
                            t.num_bytes),
                0);
    }
  }
}

TEST(GgufReaderTest, AcceptsVersion2) {
  GgufWriter w = SampleWriter();
  w.SetVersion(2);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(w.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ((*f)->tensors().size(), 4u);
}

TEST(GgufReaderTest, OpensAFileWrittenToDisk) {
  const std::string path = ::testing::TempDir() + "/gguf_reader_test_sample.gguf";
  ASSERT_TRUE(SampleWriter().WriteFile(path).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->GetString("general.architecture"), "llama");
  EXPECT_THAT((*f)->Find("tokenizer.ggml.tokens")->strings, ElementsAre("<s>", "</s>", "a", "b"));
  const GgufTensorInfo* t = (*f)->FindTensor("output_norm.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp((*f)->TensorData(*t), RandomBytes(28, 2).data(), 28), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->TensorData(*t)) % 32, 0u);
  std::filesystem::remove(path);
}

TEST(GgufReaderTest, ReportsNotFoundForAMissingFile) {
  absl::Status s = GgufFile::Open(::testing::TempDir() + "/no/such/model.gguf").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("no/such/model.gguf"));
}

TEST(GgufReaderTest, RejectsADirectory) {
  absl::Status s = GgufFile::Open(::testing::TempDir()).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a regular file"));
}

TEST(GgufReaderTest, RejectsAnEmptyFileAndAnEmptyImage) {
  const std::string path = ::testing::TempDir() + "/gguf_reader_test_empty.gguf";
  { std::ofstream touch(path, std::ios::binary | std::ios::trunc); }
  absl::Status s = GgufFile::Open(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated at offset 0 reading magic"));
  EXPECT_EQ(ParseStatus("").code(), absl::StatusCode::kDataLoss);
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------
// Truncation and random corruption.

TEST(GgufReaderTest, RejectsATruncationAtEveryOffsetOfTheHeaderMetadataAndTensorInfos) {
  const GgufImage image = SampleImage();
  ASSERT_GT(image.layout.infos_end, 200u);
  for (uint64_t n = 0; n <= image.layout.infos_end; ++n) {
    absl::Status s = ParseStatus(std::string_view(image.bytes).substr(0, n));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << "truncated to " << n << ": " << s;
  }
}

TEST(GgufReaderTest, RejectsAFileTruncatedInsideTheTensorInfos) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[2];
  absl::Status s = ParseStatus(std::string_view(image.bytes).substr(0, t.dims_at + 12));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("truncated at offset ", t.dims_at,
                                                  " reading tensor info 2 "
                                                  "(blk.0.attn_q.weight) dims")));
}

TEST(GgufReaderTest, RejectsATruncationAnywhereInTheDataSection) {
  const GgufImage image = SampleImage();
  for (uint64_t n = image.layout.infos_end; n < image.bytes.size(); ++n) {
    absl::Status s = ParseStatus(std::string_view(image.bytes).substr(0, n));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << "truncated to " << n << ": " << s;
    if (n == image.layout.tensors.back().data_at + 1) {
      EXPECT_THAT(std::string(s.message()), HasSubstr("past the end of the file"));
    }
  }
  EXPECT_TRUE(ParseStatus(image.bytes).ok());
}

TEST(GgufReaderTest, SurvivesRandomByteCorruptionWithACleanErrorOrValidTensors) {
  const GgufImage image = SampleImage();
  std::mt19937 rng(20241122);
  int ok = 0;
  constexpr int kTrials = 4000;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string bytes = image.bytes;
    // Mostly inside the header, metadata and infos, where parsing happens.
    const uint64_t region = trial % 4 == 0 ? bytes.size() : image.layout.infos_end;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const uint64_t at = rng() % region;
      switch (rng() % 3) {
        case 0: bytes[at] = static_cast<char>(rng()); break;
        case 1: bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8))); break;
        default: bytes[at] = static_cast<char>(0xff); break;
      }
    }
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(bytes);
    if (f.ok()) {
      ++ok;
      ExpectTensorsInsideImage(**f, bytes.size());
    } else {
      EXPECT_THAT(std::string(f.status().message()), HasSubstr("gguf: ")) << f.status();
      EXPECT_TRUE(f.status().code() == absl::StatusCode::kDataLoss ||
                  f.status().code() == absl::StatusCode::kInvalidArgument)
          << f.status();
    }
  }
  // Both outcomes must have been exercised.
  EXPECT_GT(ok, 0);
  EXPECT_LT(ok, kTrials);
}

TEST(GgufReaderTest, SurvivesRandomGarbageAfterAValidHeader) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes;
    GgufWriter::AppendU32(bytes, 0x46554747);
    GgufWriter::AppendU32(bytes, 3);
    GgufWriter::AppendU64(bytes, rng() % 4);
    GgufWriter::AppendU64(bytes, rng() % 4);
    bytes += RandomBytes(rng() % 256, static_cast<uint32_t>(rng()));
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(bytes);
    if (f.ok()) ExpectTensorsInsideImage(**f, bytes.size());
  }
}

// ---------------------------------------------------------------------------
// Specific corruptions: each gives a known code and names what is wrong.

void ExpectError(const std::string& bytes, absl::StatusCode code,
                 std::string_view substring) {
  absl::Status s = ParseStatus(bytes);
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(substring)));
}

TEST(GgufReaderTest, RejectsABadMagic) {
  std::string bytes = SampleImage().bytes;
  bytes[0] = 'X';
  ExpectError(bytes, absl::StatusCode::kInvalidArgument, "bad magic at offset 0");
}

TEST(GgufReaderTest, RejectsVersions1And99) {
  for (uint32_t version : {0u, 1u, 4u, 99u}) {
    std::string bytes = SampleImage().bytes;
    GgufWriter::PatchU32(bytes, 4, version);
    ExpectError(bytes, absl::StatusCode::kInvalidArgument,
                absl::StrCat("unsupported version ", version, " at offset 4"));
  }
}

TEST(GgufReaderTest, RejectsABigEndianFileWithAHint) {
  std::string bytes = SampleImage().bytes;
  GgufWriter::PatchU32(bytes, 4, 0x03000000);
  ExpectError(bytes, absl::StatusCode::kInvalidArgument, "big-endian");
}

TEST(GgufReaderTest, RejectsTensorAndKvCountsThatCannotFit) {
  std::string bytes = SampleImage().bytes;
  GgufWriter::PatchU64(bytes, 8, kTwoTo63);
  ExpectError(bytes, absl::StatusCode::kDataLoss, "tensor count 9223372036854775808 at offset 8");
  bytes = SampleImage().bytes;
  GgufWriter::PatchU64(bytes, 16, ~uint64_t{0});
  ExpectError(bytes, absl::StatusCode::kDataLoss, "metadata kv count 18446744073709551615");
}

TEST(GgufReaderTest, RejectsAHugeKeyLength) {
  const GgufImage image = SampleImage();
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, image.layout.kvs[1].key_at, kTwoTo63);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              absl::StrCat("string length 9223372036854775808 at offset ",
                           image.layout.kvs[1].key_at, " (metadata kv 1 key)"));
}

TEST(GgufReaderTest, RejectsAHugeStringValueLength) {
  const GgufImage image = SampleImage();
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, image.layout.kvs[0].value_at, kTwoTo63);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              "string length 9223372036854775808 at offset");
  ExpectError(bytes, absl::StatusCode::kDataLoss, "general.architecture");
}

TEST(GgufReaderTest, RejectsAStringLengthOneBytePastTheEnd) {
  GgufWriter w;
  w.AddString("k", "abc");
  const GgufImage image = w.BuildWithLayout();
  std::string bytes = image.bytes;
  const uint64_t len_at = image.layout.kvs[0].value_at;
  const uint64_t left = bytes.size() - len_at - 8;
  GgufWriter::PatchU64(bytes, len_at, left);
  EXPECT_TRUE(ParseStatus(bytes).ok());  // the string runs into the padding
  GgufWriter::PatchU64(bytes, len_at, left + 1);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              absl::StrCat("string length ", left + 1, " at offset ", len_at,
                           " (metadata kv 0 (k)) exceeds the ", left,
                           " bytes left in the file"));
}

TEST(GgufReaderTest, RejectsAHugeArrayCount) {
  const GgufImage image = SampleImage();
  // tokenizer.ggml.tokens: value = u32 element type, then u64 count.
  const auto& kv = image.layout.kvs[4];
  ASSERT_EQ(kv.key, "tokenizer.ggml.tokens");
  for (uint64_t count : {kTwoTo63, ~uint64_t{0}, uint64_t{1} << 40}) {
    std::string bytes = image.bytes;
    GgufWriter::PatchU64(bytes, kv.value_at + 4, count);
    ExpectError(bytes, absl::StatusCode::kDataLoss,
                absl::StrCat("array count ", count, " at offset ", kv.value_at + 4,
                             " (metadata kv 4 (tokenizer.ggml.tokens)"));
  }
  // An i32 array whose count is one element more than the file holds.
  std::string bytes = image.bytes;
  const auto& types = image.layout.kvs[5];
  GgufWriter::PatchU64(bytes, types.value_at + 4, (bytes.size() - types.value_at - 12) / 4 + 1);
  ExpectError(bytes, absl::StatusCode::kDataLoss, "array count");
}

TEST(GgufReaderTest, RejectsAnUnknownValueType) {
  const GgufImage image = SampleImage();
  std::string bytes = image.bytes;
  GgufWriter::PatchU32(bytes, image.layout.kvs[1].type_at, 13);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              absl::StrCat("unknown value type 13 at offset ", image.layout.kvs[1].type_at,
                           " (metadata kv 1 (llama.block_count) value type)"));
}

TEST(GgufReaderTest, RejectsAnUnknownArrayElementType) {
  const GgufImage image = SampleImage();
  std::string bytes = image.bytes;
  GgufWriter::PatchU32(bytes, image.layout.kvs[5].value_at, 0xffffffff);
  ExpectError(bytes, absl::StatusCode::kDataLoss, "unknown value type 4294967295");
}

TEST(GgufReaderTest, RejectsAnUnknownTensorType) {
  const GgufImage image = SampleImage();
  for (uint32_t type : {4u, 5u, 16u, 29u, 31u, 1000u}) {
    std::string bytes = image.bytes;
    GgufWriter::PatchU32(bytes, image.layout.tensors[1].type_at, type);
    ExpectError(bytes, absl::StatusCode::kDataLoss,
                absl::StrCat("unknown ggml type ", type, " at offset ",
                             image.layout.tensors[1].type_at,
                             " (tensor info 1 (output_norm.weight) type)"));
  }
}

TEST(GgufReaderTest, RejectsNDims0And5) {
  const GgufImage image = SampleImage();
  for (uint32_t n_dims : {0u, 5u, 0xffffffffu}) {
    std::string bytes = image.bytes;
    GgufWriter::PatchU32(bytes, image.layout.tensors[0].n_dims_at, n_dims);
    ExpectError(bytes, absl::StatusCode::kDataLoss,
                absl::StrCat("n_dims ", n_dims, " at offset ",
                             image.layout.tensors[0].n_dims_at,
                             " (tensor info 0 (token_embd.weight) n_dims) must be 1..4"));
  }
}

TEST(GgufReaderTest, RejectsADimOfZeroOrBeyondInt64) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[0];
  for (uint64_t dim : {uint64_t{0}, kTwoTo63}) {
    std::string bytes = image.bytes;
    GgufWriter::PatchU64(bytes, t.dims_at + 8, dim);
    ExpectError(bytes, absl::StatusCode::kDataLoss,
                absl::StrCat("dim 1 = ", dim, " at offset ", t.dims_at + 8));
  }
}

TEST(GgufReaderTest, RejectsDimsWhoseProductOverflowsInt64) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[3];  // F16 [5, 3, 2]
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, t.dims_at, uint64_t{1} << 32);
  GgufWriter::PatchU64(bytes, t.dims_at + 8, uint64_t{1} << 31);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              "element count of dims 4294967296 x 2147483648 at offset");
  ExpectError(bytes, absl::StatusCode::kDataLoss, "overflows int64");
}

TEST(GgufReaderTest, RejectsAByteSizeThatOverflows) {
  // 2^62 F32 elements fit in int64 but their 2^64 bytes do not fit in u64.
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[3];  // [5, 3, 2]
  std::string bytes = image.bytes;
  GgufWriter::PatchU32(bytes, t.type_at, static_cast<uint32_t>(GgmlType::kF32));
  GgufWriter::PatchU64(bytes, t.dims_at, uint64_t{1} << 60);
  GgufWriter::PatchU64(bytes, t.dims_at + 8, 2);
  ExpectError(bytes, absl::StatusCode::kDataLoss, "overflows u64");
}

TEST(GgufReaderTest, RejectsARowThatIsNotWholeBlocks) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[2];  // Q4_1 [64, 2]
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, t.dims_at, 48);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              "ne0 48 of Q4_1 [48, 2] is not a multiple of the Q4_1 block size 32");
}

TEST(GgufReaderTest, RejectsADataOffsetPastTheEndOfTheFile) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[1];
  for (uint64_t offset : {uint64_t{1} << 20, ~uint64_t{0} & ~uint64_t{31}}) {
    std::string bytes = image.bytes;
    GgufWriter::PatchU64(bytes, t.offset_at, offset);
    ExpectError(bytes, absl::StatusCode::kDataLoss,
                absl::StrCat("tensor info 1 (output_norm.weight) data offset ", offset,
                             " at offset ", t.offset_at));
    ExpectError(bytes, absl::StatusCode::kDataLoss, "past the end of the file");
  }
  // The last tensor moved by one alignment unit ends just past the file.
  const auto& last = image.layout.tensors.back();
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, last.offset_at, last.data_at - image.layout.data_begin + 32);
  ExpectError(bytes, absl::StatusCode::kDataLoss, "past the end of the file");
}

TEST(GgufReaderTest, RejectsAMisalignedDataOffset) {
  const GgufImage image = SampleImage();
  const auto& t = image.layout.tensors[2];
  std::string bytes = image.bytes;
  GgufWriter::PatchU64(bytes, t.offset_at, t.data_at - image.layout.data_begin + 4);
  ExpectError(bytes, absl::StatusCode::kDataLoss,
              "is not a multiple of the alignment 32");
}

TEST(GgufReaderTest, RejectsADuplicateKey) {
  GgufWriter w = SampleWriter();
  w.AddUint32("llama.block_count", 3);
  ExpectError(w.Build(), absl::StatusCode::kDataLoss,
              "duplicate metadata key \"llama.block_count\" (metadata kv 7");
}

TEST(GgufReaderTest, RejectsADuplicateTensorName) {
  GgufWriter w = SampleWriter();
  w.AddZeroTensor("output_norm.weight", {7}, GgmlType::kF32);
  ExpectError(w.Build(), absl::StatusCode::kDataLoss,
              "duplicate tensor name \"output_norm.weight\" (tensor info 4 at offset");
}

TEST(GgufReaderTest, RejectsATensorNameLongerThan64Bytes) {
  GgufWriter w;
  w.AddZeroTensor(std::string(65, 'n'), {4}, GgmlType::kF32);
  ExpectError(w.Build(), absl::StatusCode::kDataLoss,
              "tensor info 0 name at offset 24 is 65 bytes long; the limit is 64");
}

TEST(GgufReaderTest, RejectsAnAlignmentOfZeroOrNotAPowerOfTwo) {
  for (uint32_t alignment : {0u, 48u, 7u, 0x80000001u}) {
    GgufWriter w = SampleWriter();
    w.SetAlignment(alignment);
    ExpectError(w.Build(), absl::StatusCode::kDataLoss,
                absl::StrCat("general.alignment ", alignment, " at offset"));
  }
}

TEST(GgufReaderTest, RejectsAnAlignmentThatIsNotU32) {
  GgufWriter w = SampleWriter();
  w.AddUint64("general.alignment", 32);
  ExpectError(w.Build(), absl::StatusCode::kDataLoss,
              "general.alignment at offset");
  ExpectError(w.Build(), absl::StatusCode::kDataLoss, "has type u64; must be u32");
}

// ---------------------------------------------------------------------------
// The real model (skipped when setup has not fetched it).

class SmolLm2FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = conclave::testing::DefaultModelPath();
    if (path_.empty()) GTEST_SKIP() << "models/SmolLM2-135M-Instruct.Q4_1.gguf not fetched";
  }
  std::string path_;
};

TEST_F(SmolLm2FileTest, ReadsItsMetadataAndAll272Tensors) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.metadata_keys().size(), 33u);  // the header's kv count
  EXPECT_EQ(g.GetString("general.architecture"), "llama");
  EXPECT_EQ(g.GetInt("llama.block_count"), 30);
  EXPECT_EQ(g.GetInt("llama.embedding_length"), 576);
  EXPECT_EQ(g.GetInt("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(g.GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(g.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.Find("tokenizer.ggml.tokens")->strings.size(), 49152u);
  EXPECT_EQ(g.Find("tokenizer.ggml.token_type")->ints.size(), 49152u);
  EXPECT_EQ(g.Find("tokenizer.ggml.merges")->strings.size(), 48900u);
  EXPECT_THAT(g.Find("general.languages")->strings, ElementsAre("en"));

  ASSERT_EQ(g.tensors().size(), 272u);
  const GgufTensorInfo* embd = g.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, GgmlType::kQ8_0);
  EXPECT_THAT(embd->dims, ElementsAre(576, 49152));
  EXPECT_EQ(embd->offset, 0u);
  EXPECT_EQ(embd->num_bytes, 30081024u);
  EXPECT_EQ(g.FindTensor("output.weight"), nullptr);  // tied embeddings
  std::map<GgmlType, int> by_type;
  for (const GgufTensorInfo& t : g.tensors()) ++by_type[t.type];
  EXPECT_EQ(by_type[GgmlType::kQ4_1], 210);
  EXPECT_EQ(by_type[GgmlType::kF32], 61);
  EXPECT_EQ(by_type[GgmlType::kQ8_0], 1);
  const GgufTensorInfo* q = g.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, GgmlType::kQ4_1);
  EXPECT_THAT(q->dims, ElementsAre(576, 576));

  // The data section starts at 1785664 and the last tensor ends at the end.
  const uint8_t* data_begin = g.TensorData(*embd);
  uint64_t end = 0;
  for (const GgufTensorInfo& t : g.tensors()) {
    end = std::max<uint64_t>(end, g.TensorData(t) - data_begin + t.num_bytes);
  }
  EXPECT_EQ(1785664 + end, std::filesystem::file_size(path_));
}

TEST_F(SmolLm2FileTest, RejectsTruncatedCopiesAtEveryStageOfTheFile) {
  std::string bytes;
  {
    std::ifstream in(path_, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(bytes.size(), 98362432u);
  struct Cut {
    uint64_t size;
    std::string_view expect;
  };
  const Cut kCuts[] = {
      {0, "reading magic"},
      {3, "reading magic"},
      {20, "reading metadata kv count"},
      {500, "tensor count 272 at offset 8 cannot fit"},  // early metadata
      {400000, "tokenizer.ggml.tokens"},           // inside the vocabulary
      {1200000, "tokenizer.ggml.merges"},          // inside the merges
      {1769507 + 10, "tensor info 0"},             // first tensor info
      {1785614 + 30, "(output_norm.weight)"},      // last tensor info
      {1785660, "(output_norm.weight) data offset"},  // its last field
      {1785664 + 1000, "past the end of the file"},  // inside token_embd data
      {60000000, "past the end of the file"},      // mid-data
      {98362432 - 1, "tensor info 271 (output_norm.weight)"},  // one byte short
  };
  const std::string path = ::testing::TempDir() + "/gguf_reader_test_truncated.gguf";
  for (const Cut& cut : kCuts) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(cut.size));
    }
    absl::Status s = GgufFile::Open(path).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << cut.size << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(cut.expect)) << cut.size;
    EXPECT_THAT(std::string(s.message()), HasSubstr(path)) << cut.size;
  }
  std::filesystem::remove(path);
}

TEST(GemmaFileTest, ReadsTheOptionalGemma3ModelWhenPresent) {
  const std::string path = conclave::testing::GemmaModelPath();
  if (path.empty()) GTEST_SKIP() << "models/gemma-3-270m-q4_k_m.gguf not fetched";
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.GetString("general.architecture"), "gemma3");
  EXPECT_EQ(g.GetInt("gemma3.block_count"), 18);
  EXPECT_EQ(g.metadata_keys().size(), 33u);
  ASSERT_EQ(g.tensors().size(), 236u);
  std::map<GgmlType, int> by_type;
  for (const GgufTensorInfo& t : g.tensors()) ++by_type[t.type];
  EXPECT_EQ(by_type[GgmlType::kF32], 109);
  EXPECT_EQ(by_type[GgmlType::kQ5_0], 81);
  EXPECT_EQ(by_type[GgmlType::kQ4_K], 27);
  EXPECT_EQ(by_type[GgmlType::kQ8_0], 10);
  EXPECT_EQ(by_type[GgmlType::kQ6_K], 9);
  const GgufTensorInfo* embd = g.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, GgmlType::kQ8_0);
  EXPECT_THAT(embd->dims, ElementsAre(640, 262144));
}

}  // namespace
}  // namespace conclave::engine
