#!/usr/bin/env bash
# Configures and builds conclave into build/ (binaries in build/bin/).
# Extra arguments go to CMake's configure step (e.g. -DCONCLAVE_ENABLE_CUDA=ON).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
elif [ $# -gt 0 ]; then
  cmake "$BUILD_DIR" "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
