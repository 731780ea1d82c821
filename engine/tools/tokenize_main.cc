// conclave-tokenize: tokenizes stdin with a GGUF model's tokenizer.
//   conclave-tokenize --model PATH [--no-special] [--no-parse-special] < text
//     prints the ids as a JSON array, e.g. [1, 2, 3]
//   conclave-tokenize --model PATH --decode < ids.json
//     reads a JSON array of ids and writes the decoded bytes to stdout
//   --hex_lines (for scripts and tests): every stdin line is one input, given
//     as hex of its bytes when encoding (one JSON array per output line), or
//     as a JSON array when decoding (hex of the decoded bytes per line).
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/gguf_reader.h"
#include "engine/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Path of the GGUF model file");
ABSL_FLAG(bool, no_special, false, "Do not add BOS/EOS even if the vocab asks for them");
ABSL_FLAG(bool, no_parse_special, false,
          "Treat control-token text in the input as plain text");
ABSL_FLAG(bool, decode, false, "Read a JSON array of ids and write the decoded text");
ABSL_FLAG(bool, info, false,
          "Print the vocab's facts as JSON (vocab_size, bos, eos, add_bos, "
          "add_eos, eog ids) instead of tokenizing");
ABSL_FLAG(bool, hex_lines, false,
          "Batch mode: one input per stdin line (hex bytes to encode, or a JSON "
          "array to decode), one result per stdout line (decoded text as hex)");

namespace {

using conclave::engine::GgufFile;
using conclave::engine::Tokenizer;

// Parses "[1, 2, 3]" (whitespace anywhere). Ids must be in [0, vocab_size).
absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& json,
                                              int32_t vocab_size) {
  std::vector<int32_t> ids;
  size_t i = 0;
  const auto skip_ws = [&] {
    while (i < json.size() && std::isspace(static_cast<unsigned char>(json[i]))) ++i;
  };
  skip_ws();
  if (i >= json.size() || json[i] != '[') {
    return absl::InvalidArgumentError("expected a JSON array of token ids");
  }
  ++i;
  skip_ws();
  if (i < json.size() && json[i] == ']') return ids;
  while (true) {
    skip_ws();
    size_t start = i;
    while (i < json.size() && std::isdigit(static_cast<unsigned char>(json[i]))) ++i;
    if (start == i || i - start > 10) {
      return absl::InvalidArgumentError(absl::StrCat("bad token id at offset ", start));
    }
    const int64_t id = std::stoll(json.substr(start, i - start));
    if (id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocab of ", vocab_size));
    }
    ids.push_back(static_cast<int32_t>(id));
    skip_ws();
    if (i < json.size() && json[i] == ',') {
      ++i;
      continue;
    }
    if (i < json.size() && json[i] == ']') return ids;
    return absl::InvalidArgumentError(absl::StrCat("expected ',' or ']' at offset ", i));
  }
}

absl::StatusOr<std::string> FromHex(const std::string& hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("odd-length hex line");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int value = 0;
    for (size_t j = i; j < i + 2; ++j) {
      const char c = hex[j];
      const int digit = (c >= '0' && c <= '9')   ? c - '0'
                        : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                        : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                 : -1;
      if (digit < 0) return absl::InvalidArgumentError("bad hex digit");
      value = value * 16 + digit;
    }
    out.push_back(static_cast<char>(value));
  }
  return out;
}

std::string ToHex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char ch : bytes) {
    const auto b = static_cast<uint8_t>(ch);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

int RunHexLines(const Tokenizer& tokenizer) {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (absl::GetFlag(FLAGS_decode)) {
      absl::StatusOr<std::vector<int32_t>> ids = ParseIds(line, tokenizer.vocab_size());
      if (!ids.ok()) {
        std::cerr << ids.status() << "\n";
        return 1;
      }
      std::cout << ToHex(tokenizer.Decode(*ids)) << "\n";
      continue;
    }
    absl::StatusOr<std::string> text = FromHex(line);
    if (!text.ok()) {
      std::cerr << text.status() << "\n";
      return 1;
    }
    const std::vector<int32_t> ids =
        tokenizer.Encode(*text, !absl::GetFlag(FLAGS_no_special),
                         !absl::GetFlag(FLAGS_no_parse_special));
    std::cout << "[" << absl::StrJoin(ids, ", ") << "]\n";
  }
  return 0;
}

int Run() {
  const std::string path = absl::GetFlag(FLAGS_model);
  if (path.empty()) {
    std::cerr << "--model is required\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) {
    std::cerr << file.status() << "\n";
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromGguf(**file);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_info)) {
    const Tokenizer& t = **tokenizer;
    std::vector<int32_t> eog(t.eog_ids().begin(), t.eog_ids().end());
    std::sort(eog.begin(), eog.end());
    std::cout << "{\"vocab_size\": " << t.vocab_size() << ", \"bos\": " << t.bos_id()
              << ", \"eos\": " << t.eos_id()
              << ", \"add_bos\": " << (t.add_bos() ? "true" : "false")
              << ", \"add_eos\": " << (t.add_eos() ? "true" : "false")
              << ", \"eog\": [" << absl::StrJoin(eog, ", ") << "]}\n";
    return 0;
  }
  if (absl::GetFlag(FLAGS_hex_lines)) return RunHexLines(**tokenizer);
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  if (absl::GetFlag(FLAGS_decode)) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseIds(input, (*tokenizer)->vocab_size());
    if (!ids.ok()) {
      std::cerr << ids.status() << "\n";
      return 1;
    }
    const std::string text = (*tokenizer)->Decode(*ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  const std::vector<int32_t> ids = (*tokenizer)->Encode(
      input, !absl::GetFlag(FLAGS_no_special), !absl::GetFlag(FLAGS_no_parse_special));
  std::cout << "[" << absl::StrJoin(ids, ", ") << "]\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Tokenizes stdin with a GGUF model's tokenizer; prints a JSON array of ids "
      "(or, with --decode, decodes a JSON array of ids from stdin).");
  // Accept --no-parse-special as well as absl's --no_parse_special.
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a.rfind("--", 0) != 0) continue;
    const size_t end = std::min(a.find('='), a.size());
    for (size_t j = 2; j < end; ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  return Run();
}
