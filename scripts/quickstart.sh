#!/usr/bin/env bash
# Quick start: installs what is missing, builds, fetches the default model and
# generates with it. Arguments go to conclave-generate (default: a chat prompt).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CONCLAVE_SKIP_PYTHON=1 "$ROOT/scripts/install_deps.sh"
"$ROOT/scripts/fetch_models.sh"
"$ROOT/scripts/build.sh" >/dev/null
if [ $# -eq 0 ]; then
  set -- --chat --prompt "Explain in two sentences why the sky is blue." --max-tokens 128
fi
exec "$BUILD_DIR/bin/conclave-generate" --model "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"
