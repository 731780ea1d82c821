#!/usr/bin/env bash
# Runs every test: installs what is missing (Debian packages, Python venv with
# llama-cpp-python and grpcio, both models), builds, then runs the C++ suites
# (CTest), the parity suites against llama.cpp and the gRPC API suites against
# a running conclave-server (pytest).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/install_deps.sh"
"$ROOT/scripts/fetch_models.sh" --gemma
"$ROOT/scripts/build.sh"
log "C++ tests"
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$(nproc)" --timeout 900)
log "parity tests against llama.cpp"
CONCLAVE_BUILD_DIR="$BUILD_DIR" "$VENV/bin/python" -m pytest -q "$ROOT/tests/parity"
log "gRPC API tests against conclave-server"
CONCLAVE_BUILD_DIR="$BUILD_DIR" "$VENV/bin/python" -m pytest -q "$ROOT/tests/server"
