# Shared helpers for scripts/*.sh. Source it; do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${CONCLAVE_BUILD_DIR:-$ROOT/build}"
VENV="${CONCLAVE_VENV:-$ROOT/.venv}"
# Log lines carry the seconds since the first script of the run started
# (CONCLAVE_T0, inherited by the scripts it calls), so a CI log shows what
# each stage cost.
export CONCLAVE_T0="${CONCLAVE_T0:-$(date +%s)}"
log() { echo "[conclave +$(($(date +%s) - CONCLAVE_T0))s] $*" >&2; }
die() { echo "[conclave] error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
