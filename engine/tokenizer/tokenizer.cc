#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <bitset>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace conclave::engine {
namespace {

constexpr std::string_view kSpaceEscape = "\xE2\x96\x81";  // U+2581

// Token texts llama.cpp treats as end of generation (llama-vocab.cpp).
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
    "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "[e~[",
};

// FIM token kinds llama.cpp adds to the end-of-generation set, with the
// texts it recognises them by when the GGUF has no id for them.
struct FimKind {
  std::string_view key;
  std::string_view texts[5];
};
constexpr FimKind kFimEogKinds[] = {
    {"tokenizer.ggml.fim_pad_token_id",
     {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
    {"tokenizer.ggml.fim_rep_token_id",
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
    {"tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>"}},
};

// Pre-tokenizer types whose split is \p{N} then the GPT-2 regex.
constexpr std::string_view kDigitsThenGpt2Pre[] = {
    "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
    "minerva-7b"};
// Pre-tokenizer types whose split is the GPT-2 regex alone.
constexpr std::string_view kGpt2Pre[] = {"gpt-2", "phi-2", "jina-es", "jina-de",
                                         "mpt", "olmo", "jais", "exaone4"};

// (absl::StrReplaceAll takes absl::string_view, which this absl build keeps
// distinct from std::string_view.)
std::string ReplaceAll(std::string_view text, std::string_view from,
                       std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

template <size_t N>
bool Contains(const std::string_view (&list)[N], std::string_view s) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

absl::StatusOr<const GgufValue*> FindArray(const GgufFile& file,
                                           std::string_view key,
                                           GgufValueType element_type,
                                           bool required) {
  const GgufValue* v = file.Find(key);
  if (v == nullptr) {
    if (!required) return nullptr;
    return absl::InvalidArgumentError(absl::StrCat("GGUF key ", std::string(key), " is missing"));
  }
  if (v->type != GgufValueType::kArray) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF key ", std::string(key), " is not an array"));
  }
  const bool ok =
      v->array_type == element_type ||
      // Scores may be stored as int32 (llama.cpp accepts both).
      (element_type == GgufValueType::kFloat32 &&
       v->array_type == GgufValueType::kInt32);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF key %s has element type %d, expected %d", key,
        static_cast<int>(v->array_type), static_cast<int>(element_type)));
  }
  return v;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  absl::Status status = tok->Init(file);
  if (!status.ok()) return status;
  return tok;
}

absl::Status Tokenizer::Init(const GgufFile& file) {
  const std::optional<std::string> model = file.GetString("tokenizer.ggml.model");
  if (!model) {
    return absl::InvalidArgumentError(
        "GGUF key tokenizer.ggml.model is missing or not a string");
  }
  std::vector<PreTokenizeStep> steps;
  if (*model == "gpt2") {
    type_ = Type::kBpe;
    const std::string pre = file.GetString("tokenizer.ggml.pre").value_or("");
    if (Contains(kDigitsThenGpt2Pre, pre)) {
      steps = {PreTokenizeStep::kDigits, PreTokenizeStep::kGpt2};
    } else if (Contains(kGpt2Pre, pre)) {
      steps = {PreTokenizeStep::kGpt2};
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "byte-level BPE pre-tokenizer tokenizer.ggml.pre=\"", pre,
          "\" is not supported (supported: smollm, starcoder, gpt-2, ...)"));
    }
    bos_id_ = 11;  // llama.cpp's BPE defaults
    eos_id_ = 11;
    unk_id_ = -1;
    add_bos_ = false;
    add_eos_ = false;
    add_space_prefix_ = false;
  } else if (*model == "llama") {
    type_ = Type::kSpm;
    bos_id_ = 1;
    eos_id_ = 2;
    unk_id_ = 0;
    add_bos_ = true;
    add_eos_ = false;
    add_space_prefix_ = true;
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.ggml.model=\"", *model,
        "\" is not supported (supported: gpt2, llama)"));
  }
  if (std::optional<bool> b = file.GetBool("tokenizer.ggml.add_space_prefix")) {
    add_space_prefix_ = *b;
  }

  // Vocabulary.
  absl::StatusOr<const GgufValue*> tokens =
      FindArray(file, "tokenizer.ggml.tokens", GgufValueType::kString, true);
  if (!tokens.ok()) return tokens.status();
  const std::vector<std::string>& texts = (*tokens)->strings;
  const size_t n = texts.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer.ggml.tokens is empty");
  if (n > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("tokenizer.ggml.tokens has too many tokens");
  }
  absl::StatusOr<const GgufValue*> scores =
      FindArray(file, "tokenizer.ggml.scores", GgufValueType::kFloat32, false);
  if (!scores.ok()) return scores.status();
  absl::StatusOr<const GgufValue*> types =
      FindArray(file, "tokenizer.ggml.token_type", GgufValueType::kInt32, false);
  if (!types.ok()) return types.status();
  const auto score_count = [](const GgufValue* v) {
    return v->floats.empty() ? v->ints.size() : v->floats.size();
  };
  if (*scores != nullptr && score_count(*scores) < n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tokenizer.ggml.scores has %d entries for %d tokens",
        score_count(*scores), n));
  }
  if (*types != nullptr && (*types)->ints.size() < n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tokenizer.ggml.token_type has %d entries for %d tokens",
        (*types)->ints.size(), n));
  }
  vocab_.texts.resize(n);
  vocab_.scores.assign(n, 0.0f);
  vocab_.attrs.assign(n, kAttrNormal);
  vocab_.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string text = texts[i].empty() ? absl::StrCat("[EMPTY_", i, "]") : texts[i];
    auto [it, inserted] = vocab_.ids.try_emplace(text, static_cast<int32_t>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "duplicate token in tokenizer.ggml.tokens: '%s' has ids %d and %d",
          text, it->second, i));
    }
    vocab_.texts[i] = std::move(text);
    if (*scores != nullptr) {
      vocab_.scores[i] = (*scores)->floats.empty()
                             ? static_cast<float>((*scores)->ints[i])
                             : static_cast<float>((*scores)->floats[i]);
    }
    if (*types != nullptr) vocab_.attrs[i] = TokenTypeToAttr((*types)->ints[i]);
  }

  // Special ids: defaults out of range are dropped; GGUF values override when
  // in range (llama.cpp ignores out-of-range ones with a warning; we refuse).
  const auto read_id = [&](std::string_view key, int32_t* id) -> absl::Status {
    if (*id >= static_cast<int32_t>(n)) *id = -1;
    const GgufValue* v = file.Find(key);
    if (v == nullptr) return absl::OkStatus();
    std::optional<int64_t> value = file.GetInt(key);
    if (!value || *value < 0 || *value >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GGUF key %s is not a token id in [0, %d)", key, n));
    }
    *id = static_cast<int32_t>(*value);
    return absl::OkStatus();
  };
  if (absl::Status s = read_id("tokenizer.ggml.bos_token_id", &bos_id_); !s.ok()) return s;
  if (absl::Status s = read_id("tokenizer.ggml.eos_token_id", &eos_id_); !s.ok()) return s;
  if (absl::Status s = read_id("tokenizer.ggml.unknown_token_id", &unk_id_); !s.ok()) return s;
  if (std::optional<bool> b = file.GetBool("tokenizer.ggml.add_bos_token")) add_bos_ = *b;
  if (std::optional<bool> b = file.GetBool("tokenizer.ggml.add_eos_token")) add_eos_ = *b;
  if (add_bos_ && bos_id_ < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_bos_token is true but there is no BOS token id");
  }
  if (add_eos_ && eos_id_ < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_eos_token is true but there is no EOS token id");
  }

  // End-of-generation set, with llama.cpp's text-based detection (which also
  // promotes such tokens to control tokens).
  // Fill-in-the-middle pad / repo / file-separator tokens (by GGUF id, else
  // llama.cpp's text detection, which also makes them control tokens) end
  // generation too.
  for (const FimKind& fim : kFimEogKinds) {
    int32_t id = -1;
    if (absl::Status s = read_id(fim.key, &id); !s.ok()) return s;
    if (id < 0) {
      for (std::string_view text : fim.texts) {
        if (text.empty()) break;
        std::optional<int32_t> found = vocab_.Find(text);
        if (found && (id < 0 || *found < id)) id = *found;
      }
      if (id >= 0) vocab_.attrs[id] |= kAttrControl;
    }
    if (id >= 0) eog_ids_.insert(id);
  }
  for (std::string_view key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = -1;
    if (absl::Status s = read_id(key, &id); !s.ok()) return s;
    if (id >= 0) eog_ids_.insert(id);
  }
  for (std::string_view text : kEogTexts) {
    if (std::optional<int32_t> id = vocab_.Find(text)) {
      eog_ids_.insert(*id);
      vocab_.attrs[*id] |= kAttrControl;
    }
  }
  for (std::string_view text : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    if (std::optional<int32_t> id = vocab_.Find(text)) vocab_.attrs[*id] = kAttrUserDefined;
  }
  if (eos_id_ >= 0) eog_ids_.insert(eos_id_);
  const auto id_of = [&](std::string_view text) { return vocab_.Find(text).value_or(-1); };
  const auto in_eog = [&](int32_t id) { return id >= 0 && eog_ids_.contains(id); };
  // gpt-oss / solar-open: "<|end|>" is not EOG when "<|return|>" and
  // "<|call|>" (or "<|calls|>" and "<|flush|>") are.
  const int32_t end_id = id_of("<|end|>");
  const bool has_call = in_eog(id_of("<|call|>")) || in_eog(id_of("<|calls|>"));
  if (in_eog(end_id) && has_call &&
      (in_eog(id_of("<|return|>")) || in_eog(id_of("<|flush|>")))) {
    eog_ids_.erase(end_id);
    vocab_.attrs[end_id] = kAttrUserDefined;
  }
  // Gemma 4: "</s>" is not EOG when "<|tool_response>" is.
  const int32_t s_id = id_of("</s>");
  if (in_eog(s_id) && in_eog(id_of("<|tool_response>"))) {
    eog_ids_.erase(s_id);
    vocab_.attrs[s_id] = kAttrNormal;
  }

  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id) {
    if (vocab_.attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      special_tokens_.push_back(id);
    }
  }
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(),
                   [&](int32_t a, int32_t b) {
                     return vocab_.texts[a].size() > vocab_.texts[b].size();
                   });

  if (type_ == Type::kBpe) {
    absl::StatusOr<const GgufValue*> merges =
        FindArray(file, "tokenizer.ggml.merges", GgufValueType::kString, true);
    if (!merges.ok()) return merges.status();
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> bpe =
        BpeTokenizer::Create(&vocab_, (*merges)->strings, std::move(steps));
    if (!bpe.ok()) return bpe.status();
    bpe_ = std::move(*bpe);
  } else {
    spm_ = std::make_unique<SpmTokenizer>(&vocab_, unk_id_);
  }

  pieces_.resize(n);
  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id) pieces_[id] = RenderPiece(id);
  return absl::OkStatus();
}

std::string Tokenizer::RenderPiece(int32_t id) const {
  const uint32_t attr = vocab_.attrs[id];
  const std::string& text = vocab_.texts[id];
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) {
    if (type_ == Type::kSpm) return ReplaceAll(text, kSpaceEscape, " ");
    std::string out;
    size_t offset = 0;
    while (offset < text.size()) {
      const size_t start = offset;
      const int byte = UnicodeToByte(DecodeUtf8(text, &offset));
      if (byte >= 0) {
        out.push_back(static_cast<char>(byte));
        continue;
      }
      // Same marker llama.cpp writes for a character outside the alphabet.
      absl::StrAppend(&out, "[UNK_BYTE_0x");
      for (size_t i = start; i < offset; ++i) {
        absl::StrAppendFormat(&out, "%02x", static_cast<uint8_t>(text[i]));
      }
      absl::StrAppend(&out, text, "]");
    }
    return out;
  }
  if (attr & kAttrByte) {
    // "<0xXX>"
    if (text.size() >= 5 && text.compare(0, 3, "<0x") == 0) {
      int value = 0;
      for (char c : text.substr(3, 2)) {
        const int digit = (c >= '0' && c <= '9')   ? c - '0'
                          : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                          : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                   : -1;
        if (digit < 0) return "";
        value = value * 16 + digit;
      }
      return std::string(1, static_cast<char>(value));
    }
    return "";
  }
  return "";  // unused / undefined tokens render as nothing
}

std::vector<Tokenizer::Fragment> Tokenizer::PartitionSpecial(
    std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::bitset<256> present;
  for (char c : text) present.set(static_cast<uint8_t>(c));
  std::vector<Fragment> next;
  for (int32_t id : special_tokens_) {
    if (!parse_special && (vocab_.attrs[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string& special = vocab_.texts[id];
    if (special.size() > text.size() || !present.test(static_cast<uint8_t>(special[0]))) {
      continue;
    }
    next.clear();
    bool changed = false;
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t offset = f.offset;
      size_t end = f.offset + f.length;
      while (offset < end) {
        const size_t match = text.substr(0, end).find(special, offset);
        if (match == std::string_view::npos) {
          next.push_back({-1, offset, end - offset});
          break;
        }
        changed = true;
        if (match > offset) next.push_back({-1, offset, match - offset});
        next.push_back({id, match, special.size()});
        offset = match + special.size();
      }
    }
    if (changed) fragments.swap(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_) out.push_back(bos_id_);
  bool prev_special = true;  // SPM: a space prefix goes after BOS/specials
  for (const Fragment& f : PartitionSpecial(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view raw = text.substr(f.offset, f.length);
    if (type_ == Type::kBpe) {
      bpe_->Encode(raw, &out);
    } else {
      std::string escaped = add_space_prefix_ && prev_special ? " " : "";
      escaped.append(raw);
      escaped = ReplaceAll(escaped, " ", kSpaceEscape);
      spm_->Encode(escaped, &out);
    }
    prev_special = false;
  }
  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

std::string Tokenizer::TokenPiece(int32_t id) const {
  return vocab_.IsValid(id) ? pieces_[id] : std::string();
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (vocab_.IsValid(id)) out += pieces_[id];
  }
  return out;
}

}  // namespace conclave::engine
