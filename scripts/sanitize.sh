#!/usr/bin/env bash
# The sanitizer stage (docs/sanitizers.md): the C++ suites again, built with
#   address  ASan + UBSan (findings abort), every ctest test, then the gRPC
#            API suite (tests/server) against an ASan conclave-server, whose
#            leak report at exit fails the test that stops it;
#   thread   TSan, the ctest tests that run threads (label "*_threads":
#            the kernels' pool, engine, orchestrator, HTTP endpoint,
#            metrics exposer, key store watcher, quotas, load generator).
# Each sanitizer builds into a directory of its own (build-asan, build-tsan
# beside build/, or $CONCLAVE_SANITIZE_DIR_PREFIX-{asan,tsan}) and runs under
# a time bound ($CONCLAVE_SANITIZE_MINUTES per sanitizer, default 20).
#
#   scripts/sanitize.sh                 both
#   scripts/sanitize.sh thread          one
# Dependencies come from scripts/install_deps.sh (scripts/test.sh runs it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PREFIX="${CONCLAVE_SANITIZE_DIR_PREFIX:-$ROOT/build}"
MINUTES="${CONCLAVE_SANITIZE_MINUTES:-20}"
SANITIZERS=("$@")
[ ${#SANITIZERS[@]} -gt 0 ] || SANITIZERS=(address thread)

# Reports go to stderr with full stacks; a finding fails the test process.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/scripts/tsan.supp"

configure() {  # dir sanitizer
  if [ ! -f "$1/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCONCLAVE_SANITIZE="$2" >/dev/null
  fi
}

run_address() {
  local dir="$PREFIX-asan"
  configure "$dir" address
  log "ASan+UBSan: building every target into $dir"
  cmake --build "$dir" -j "$(nproc)"
  log "ASan+UBSan: C++ tests"
  (cd "$dir" && ctest --output-on-failure -j "$(nproc)" --timeout 900)
  log "ASan+UBSan: gRPC API tests against an ASan conclave-server"
  CONCLAVE_BUILD_DIR="$dir" "$VENV/bin/python" -m pytest -q "$ROOT/tests/server"
}

run_thread() {
  local dir="$PREFIX-tsan"
  configure "$dir" thread
  log "TSan: building the tests that run threads (tests/CMakeLists.txt THREADED_TESTS) into $dir"
  cmake --build "$dir" -j "$(nproc)" --target conclave_threaded_tests
  log "TSan: the tests labelled threads"
  (cd "$dir" && ctest --output-on-failure -j "$(nproc)" --timeout 900 -L threads)
}

for sanitizer in "${SANITIZERS[@]}"; do
  case "$sanitizer" in
    address|thread) ;;
    *) die "unknown sanitizer '$sanitizer' (address or thread)" ;;
  esac
  start=$SECONDS
  export -f "run_$sanitizer" configure log die
  export ROOT PREFIX VENV
  timeout --signal=TERM --kill-after=30 "$((MINUTES * 60))" bash -c "set -euo pipefail; run_$sanitizer" \
    || die "$sanitizer sanitizer stage failed or ran past $MINUTES minutes (rc $?)"
  log "$sanitizer sanitizer stage passed in $((SECONDS - start)) s"
done
