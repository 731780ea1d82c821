#!/usr/bin/env bash
# The fuzz stage (docs/fuzzing.md): builds the libFuzzer targets of fuzz/ with
# clang (ASan + UBSan) into build-fuzz/ and runs them.
#
#   scripts/fuzz.sh                       every target for $CONCLAVE_FUZZ_SECONDS
#                                         (default 30) each, from its seed corpus
#   scripts/fuzz.sh TARGET [SECONDS] [-- LIBFUZZER_FLAGS...]
#                                         one target, longer (default 600 s),
#                                         for hunting: its working corpus
#                                         (build-fuzz/corpus/TARGET) grows
#                                         from run to run
#
# Every run: -rss_limit_mb=2048 (a huge allocation is a finding), -timeout=10
# per input, the target's dictionary. The checked-in corpus (fuzz/corpus/) is
# only read; new inputs go to a temporary directory (or the working corpus).
# Fails on the first target that crashes; its input is saved under
# build-fuzz/crashes/ and the line to reproduce it is printed.
# Environment: CONCLAVE_FUZZ_BUILD_DIR (default build-fuzz), CONCLAVE_FUZZ_CXX
# / CONCLAVE_FUZZ_CC (default clang++-14 / clang-14), CONCLAVE_FUZZ_MODEL
# (tokenizer_fuzz's vocab, default the SmolLM2 model). Dependencies come from
# scripts/install_deps.sh (clang-14 and libclang-rt-14-dev for libFuzzer).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

FUZZ_DIR="${CONCLAVE_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX_COMPILER="${CONCLAVE_FUZZ_CXX:-clang++-14}"
C_COMPILER="${CONCLAVE_FUZZ_CC:-clang-14}"
SECONDS_EACH="${CONCLAVE_FUZZ_SECONDS:-30}"
MODEL="${CONCLAVE_FUZZ_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
TARGETS=(gguf_reader_fuzz tokenizer_fuzz answer_extraction_fuzz generate_request_fuzz
  contemplate_request_fuzz chat_request_fuzz)

target=""
seconds=""
extra=()
if [ $# -gt 0 ]; then
  target="$1"
  shift
  [[ " ${TARGETS[*]} " == *" $target "* ]] || die "unknown fuzz target '$target' (one of: ${TARGETS[*]})"
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then seconds="$1"; shift; fi
  [ "${1:-}" = "--" ] && shift
  extra=("$@")
fi

command -v "$CXX_COMPILER" >/dev/null || die "$CXX_COMPILER not found (scripts/install_deps.sh installs clang-14)"
[ -f "$MODEL" ] || die "tokenizer_fuzz needs $MODEL (scripts/fetch_models.sh, or set CONCLAVE_FUZZ_MODEL)"
export CONCLAVE_FUZZ_MODEL="$MODEL"
# Reports with full stacks; libFuzzer itself turns a report into a failure.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

if [ ! -f "$FUZZ_DIR/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$FUZZ_DIR" -G Ninja -DCONCLAVE_FUZZ=ON \
    -DCMAKE_C_COMPILER="$C_COMPILER" -DCMAKE_CXX_COMPILER="$CXX_COMPILER" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" >/dev/null
fi
log "fuzz: building the targets into $FUZZ_DIR"
cmake --build "$FUZZ_DIR" --target conclave_fuzz -j "$(nproc)"

mkdir -p "$FUZZ_DIR/crashes" "$FUZZ_DIR/logs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run() {  # target seconds working-corpus-dir [libFuzzer flags...]
  local t="$1" secs="$2" corpus="$3"
  shift 3
  local dict=()
  [ -f "$ROOT/fuzz/$t.dict" ] && dict=(-dict="$ROOT/fuzz/$t.dict")
  case "$t" in
    generate_request_fuzz|contemplate_request_fuzz) dict=(-dict="$ROOT/fuzz/request_fuzz.dict") ;;
  esac
  mkdir -p "$corpus"
  local log_file="$FUZZ_DIR/logs/$t.log"
  log "fuzz: $t for ${secs}s (log: $log_file)"
  if ! "$FUZZ_DIR/bin/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/crashes/$t-" "${dict[@]}" "$@" \
      "$corpus" "$ROOT/fuzz/corpus/$t" >"$log_file" 2>&1; then
    tail -n 60 "$log_file" >&2
    local artifact
    artifact=$(grep -o "Test unit written to .*" "$log_file" | tail -n 1 | sed 's/Test unit written to //')
    die "fuzz: $t found a crash${artifact:+: $artifact}; reproduce with $FUZZ_DIR/bin/fuzz/$t ${artifact:-<input>} (docs/fuzzing.md: make it a regression test)"
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "$log_file" | tail -n 1 >&2 || true
}

if [ -n "$target" ]; then
  run "$target" "${seconds:-600}" "$FUZZ_DIR/corpus/$target" "${extra[@]}"
else
  for t in "${TARGETS[@]}"; do run "$t" "$SECONDS_EACH" "$work/$t"; done
fi
log "fuzz: no crashes"
