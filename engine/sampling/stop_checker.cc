#include "engine/sampling/stop_checker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace conclave::engine {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// What starts at s[i]: a valid character of `length` bytes, or an invalid
// maximal subpart of `length` bytes (the longest prefix of a well-formed
// sequence, at least 1; Unicode 15 section 3.9 table 3-7), `truncated` when
// the input ended while it could still have become valid.
struct Utf8Step {
  size_t length;
  bool valid;
  bool truncated;
};

Utf8Step Examine(std::string_view s, size_t i) {
  const uint8_t b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return {1, true, false};
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;  // no overlongs
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (b >= 0xE1 && b <= 0xEF) {
    need = 2;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;  // no overlongs
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else {
    return {1, false, false};  // continuation byte, C0, C1, F5..FF
  }
  for (size_t got = 0; got < need; ++got) {
    if (i + 1 + got == s.size()) return {1 + got, false, true};
    const uint8_t c = static_cast<uint8_t>(s[i + 1 + got]);
    if (c < lo || c > hi) return {1 + got, false, false};
    lo = 0x80, hi = 0xBF;
  }
  return {1 + need, true, false};
}

// Appends the valid UTF-8 of `buffer` to `out`, each invalid maximal subpart
// as U+FFFD, and erases what it consumed. Unless `final`, a character cut
// off by the end of `buffer` stays there for the next call.
void RepairUtf8(std::string& buffer, bool final, std::string& out) {
  size_t i = 0;
  while (i < buffer.size()) {
    const Utf8Step step = Examine(buffer, i);
    if (step.valid) {
      out.append(buffer, i, step.length);
    } else if (step.truncated && !final) {
      break;
    } else {
      out.append(kReplacement);
    }
    i += step.length;
  }
  buffer.erase(0, i);
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Step step = Examine(s, i);
    if (!step.valid) return false;
    i += step.length;
  }
  return true;
}

}  // namespace

absl::Status ValidateStopStrings(absl::Span<const std::string> stop) {
  if (stop.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(absl::StrCat("stop has ", stop.size(),
                                                   " strings; at most ", kMaxStopStrings,
                                                   " are allowed"));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty() || stop[i].size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop[", i, "] is ", stop[i].size(),
                       " bytes; each stop string must be 1..", kMaxStopStringBytes, " bytes"));
    }
    if (!IsValidUtf8(stop[i])) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

StopChecker::StopChecker(const Tokenizer& tokenizer, std::vector<std::string> stop)
    : tokenizer_(tokenizer) {
  const absl::Status valid = ValidateStopStrings(stop);
  CHECK(valid.ok()) << "StopChecker built from unvalidated stop strings: " << valid;
  stops_.reserve(stop.size());
  for (std::string& text : stop) {
    Stop s;
    s.failure.assign(text.size(), 0);
    for (size_t i = 1, k = 0; i < text.size(); ++i) {
      while (k > 0 && text[i] != text[k]) k = s.failure[k - 1];
      if (text[i] == text[k]) ++k;
      s.failure[i] = static_cast<int>(k);
    }
    s.text = std::move(text);
    stops_.push_back(std::move(s));
  }
}

bool StopChecker::Feed(std::string_view bytes) {
  for (const char c : bytes) {
    pending_.push_back(c);
    size_t matched = 0;  // length of the longest stop string ending here
    for (Stop& s : stops_) {
      int state = s.state;
      while (state > 0 && s.text[state] != c) state = s.failure[state - 1];
      if (s.text[state] == c) ++state;
      if (static_cast<size_t>(state) == s.text.size()) {
        matched = std::max(matched, s.text.size());
        state = s.failure[state - 1];
      }
      s.state = state;
    }
    if (matched > 0) {
      // Held-back text covers every partial match, so the stop string lies
      // entirely in pending_.
      CHECK_LE(matched, pending_.size()) << "stop string starts in emitted text";
      pending_.resize(pending_.size() - matched);
      return true;
    }
  }
  return false;
}

std::string StopChecker::Release() {
  size_t hold = 0;
  for (const Stop& s : stops_) hold = std::max(hold, static_cast<size_t>(s.state));
  CHECK_LE(hold, pending_.size()) << "partial stop match reaches into emitted text";
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, out.size());
  text_.append(out);
  return out;
}

TextDelta StopChecker::Finish(bool stopped) {
  TextDelta delta{std::move(pending_), stopped};
  pending_.clear();
  utf8_tail_.clear();
  text_.append(delta.text);
  stopped_ = stopped;
  finished_ = true;
  return delta;
}

TextDelta StopChecker::Append(int32_t token) {
  if (finished_) return {};
  utf8_tail_.append(tokenizer_.TokenPiece(token));
  repaired_.clear();
  RepairUtf8(utf8_tail_, /*final=*/false, repaired_);
  if (Feed(repaired_)) return Finish(/*stopped=*/true);
  return {Release(), false};
}

std::string StopChecker::Flush() {
  if (finished_) return {};
  repaired_.clear();
  RepairUtf8(utf8_tail_, /*final=*/true, repaired_);
  const bool stopped = Feed(repaired_);
  return Finish(stopped).text;
}

}  // namespace conclave::engine
