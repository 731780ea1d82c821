# Shared helpers for scripts/*.sh. Source it; do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${CONCLAVE_BUILD_DIR:-$ROOT/build}"
VENV="${CONCLAVE_VENV:-$ROOT/.venv}"
log() { echo "[conclave] $*" >&2; }
die() { echo "[conclave] error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
