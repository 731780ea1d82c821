// Turns one sequence's generated tokens into text deltas that are safe to
// stream, and ends the text at the first stop string.
//
// Pipeline per token: TokenPiece bytes -> UTF-8 repair -> stop-string match
// -> emit what can no longer change.
//   * UTF-8: a character split across tokens is held back until its last
//     byte arrives. Bytes that can never form a character (a stray
//     continuation byte, 0xC0/0xC1/0xF5..0xFF, a lead byte followed by a
//     non-continuation, overlongs, surrogates) are replaced by U+FFFD, one per
//     maximal invalid subpart (Unicode's recommended practice, as WHATWG and
//     Python's errors="replace"). Flush replaces a character still incomplete
//     at the end by one U+FFFD. So text() is always valid UTF-8 and can go
//     into JSON or a protobuf string as is.
//   * Stop strings are matched on that repaired text as if it arrived one
//     byte at a time: the text ends at the first byte where some stop string
//     is complete; if several complete at that byte, the longest (the one
//     starting earliest) wins. The result does not depend on how the text was
//     split into tokens. The longest suffix that is a proper prefix of some
//     stop string is held back until it either completes or diverges.
// Stop token ids are not handled here (the engine does that). Control tokens
// render as their text, as Tokenizer::TokenPiece does.
// Not thread-safe: one per sequence.
#ifndef CONCLAVE_ENGINE_SAMPLING_STOP_CHECKER_H_
#define CONCLAVE_ENGINE_SAMPLING_STOP_CHECKER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace conclave::engine {

inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;

// INVALID_ARGUMENT unless there are at most 16 stop strings, each 1..256
// bytes of valid UTF-8; the message names the offending index, e.g.
// "stop[2] is 300 bytes; each stop string must be 1..256 bytes".
absl::Status ValidateStopStrings(absl::Span<const std::string> stop);

struct TextDelta {
  std::string text;
  bool stopped = false;  // a stop string matched; `text` excludes it
};

class StopChecker {
 public:
  // `tokenizer` must outlive the checker. Precondition:
  // ValidateStopStrings(stop).ok() (CHECKed). Duplicates are harmless.
  StopChecker(const Tokenizer& tokenizer, std::vector<std::string> stop);

  // Appends one generated token and returns the text that is now final: it
  // never ends inside an incomplete UTF-8 character and never includes a
  // suffix that could still grow into a stop string. When a stop string
  // completes, returns the text before it with stopped = true; every later
  // Append or Flush returns nothing.
  TextDelta Append(int32_t token);

  // Ends the text (max tokens, stop token, abort): returns everything held
  // back, an incomplete trailing character as U+FFFD. A stop string completed
  // by that U+FFFD still cuts the text (then stopped() turns true). Later
  // Append and Flush calls return nothing.
  std::string Flush();

  // All text emitted so far (the concatenation of every delta).
  const std::string& text() const { return text_; }
  // A stop string matched.
  bool stopped() const { return stopped_; }
  // Bytes appended but not emitted yet: an incomplete character plus text
  // that may start a stop string.
  size_t held_bytes() const { return utf8_tail_.size() + pending_.size(); }

 private:
  struct Stop {
    std::string text;
    std::vector<int> failure;  // KMP: longest proper border of text[0, i]
    int state = 0;             // bytes of `text` matched by the text's suffix
  };

  // Runs repaired bytes through the matchers, appending them to pending_.
  // Returns true when a stop string completed (pending_ then ends just
  // before it, and the rest of `bytes` is dropped).
  bool Feed(std::string_view bytes);
  // Moves what no matcher holds back from pending_ to the result.
  std::string Release();
  TextDelta Finish(bool stopped);

  const Tokenizer& tokenizer_;
  std::vector<Stop> stops_;
  std::string utf8_tail_;  // an incomplete character's first bytes
  std::string pending_;    // repaired text not emitted yet
  std::string text_;
  std::string repaired_;   // scratch
  bool stopped_ = false;
  bool finished_ = false;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_SAMPLING_STOP_CHECKER_H_
