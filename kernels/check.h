// Invariant checks: CHECK(cond) << "what broke"; aborts with the file, line,
// condition and message when `cond` is false. For bugs only; anything that
// can fail for a reason outside the program (input, files, memory budget)
// returns absl::Status instead.
// (Debian's Abseil 20220623 predates absl/log, so conclave carries these.)
#ifndef CONCLAVE_KERNELS_CHECK_H_
#define CONCLAVE_KERNELS_CHECK_H_

#include <sstream>

namespace conclave::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace conclave::internal

#define CHECK(condition)                                                  \
  if (condition) {                                                        \
  } else /* NOLINT */                                                     \
    ::conclave::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define CONCLAVE_CHECK_OP(op, a, b) \
  CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "

#define CHECK_EQ(a, b) CONCLAVE_CHECK_OP(==, a, b)
#define CHECK_NE(a, b) CONCLAVE_CHECK_OP(!=, a, b)
#define CHECK_LT(a, b) CONCLAVE_CHECK_OP(<, a, b)
#define CHECK_LE(a, b) CONCLAVE_CHECK_OP(<=, a, b)
#define CHECK_GT(a, b) CONCLAVE_CHECK_OP(>, a, b)
#define CHECK_GE(a, b) CONCLAVE_CHECK_OP(>=, a, b)

#endif  // CONCLAVE_KERNELS_CHECK_H_
