#!/usr/bin/env bash
# Quick start: installs what is missing, builds, fetches the default model and
# starts conclave-server on it (127.0.0.1:50051 unless arguments say
# otherwise; arguments go to conclave-server). Try it from another shell:
#   build/bin/conclave contemplate --agents 4 "What is 17 * 3?"
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CONCLAVE_SKIP_PYTHON=1 "$ROOT/scripts/install_deps.sh"
"$ROOT/scripts/fetch_models.sh"
"$ROOT/scripts/build.sh" >/dev/null
exec "$BUILD_DIR/bin/conclave-server" --model "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"
