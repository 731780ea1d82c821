#!/usr/bin/env bash
# Runs every test: installs what is missing (Debian packages, Python venv with
# llama-cpp-python and grpcio, both models), builds, then runs the C++ suites
# (CTest), the libFuzzer targets for a bounded time (scripts/fuzz.sh), the
# parity suites against llama.cpp, the gRPC API and metrics suites against a
# running conclave-server, the deploy/ checks (pytest), and last the
# sanitizer stage (scripts/sanitize.sh: ASan+UBSan over the C++ and server
# suites, TSan over the threaded tests; about 20 minutes on 2 cores).
# CONCLAVE_SKIP_SANITIZERS=1 leaves that stage out (local iterations; CI
# always runs it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/install_deps.sh"
"$ROOT/scripts/fetch_models.sh" --gemma
"$ROOT/scripts/build.sh"
log "C++ tests"
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$(nproc)" --timeout 900)
log "fuzz targets, 30 s each from their seed corpora (docs/fuzzing.md)"
"$ROOT/scripts/fuzz.sh"
log "parity tests against llama.cpp"
CONCLAVE_BUILD_DIR="$BUILD_DIR" "$VENV/bin/python" -m pytest -q "$ROOT/tests/parity"
log "gRPC API and metrics tests against conclave-server"
CONCLAVE_BUILD_DIR="$BUILD_DIR" "$VENV/bin/python" -m pytest -q "$ROOT/tests/server"
log "deploy/ checks (promtool, dashboard and alert queries, manifests)"
CONCLAVE_BUILD_DIR="$BUILD_DIR" "$VENV/bin/python" -m pytest -q "$ROOT/tests/deploy"
if [ "${CONCLAVE_SKIP_SANITIZERS:-0}" = 1 ]; then
  log "sanitizer stage skipped (CONCLAVE_SKIP_SANITIZERS=1)"
else
  log "sanitizers: ASan+UBSan over every C++ and server test, TSan over the threaded ones (docs/sanitizers.md)"
  "$ROOT/scripts/sanitize.sh"
fi
