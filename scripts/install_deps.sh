#!/usr/bin/env bash
# Installs the Debian packages conclave builds against, and the Python venv
# its tests use. Idempotent: does nothing that is already done.
#
# Debian packages, each for a reason:
#   build-essential cmake ninja-build  compiler and build
#   libabsl-dev            absl::Status/StatusOr, flags, containers, logging
#   libspdlog-dev          structured logs
#   libgtest-dev libgmock-dev  unit tests
#   libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
#                          the gRPC API (proto/, server/)
#   prometheus-cpp-dev     metrics exposer
#   libssl-dev             OpenSSL's libcrypto: random API keys, SHA-256 of
#                          their secrets, constant-time compare (server/auth/)
#   nlohmann-json3-dev     the API key store file (header-only JSON with a
#                          strict UTF-8 parser; server/auth/) and the HTTP
#                          endpoint's JSON (server/http/)
#   libcpp-httplib-dev     the OpenAI-compatible HTTP endpoint (server/http/,
#                          docs/http.md): linked to OpenSSL, so TLS works
#                          (Debian 12's civetweb does not: docs/http.md)
#   clang-14 libclang-rt-14-dev  the fuzz stage (scripts/fuzz.sh, docs/fuzzing.md):
#                          libFuzzer and the sanitizer runtimes come with clang's
#                          runtime package, not with the compiler
#   prometheus             a real Prometheus server (and promtool) for the metrics
#                          integration test and the deploy/ config and rule checks
#   python3-venv           the test venv
# Python (in .venv): llama-cpp-python (the llama.cpp peer for token and logit
# parity, built from source by pip), numpy, pytest; grpcio, grpcio-tools
# (protoc for the Python stubs the API tests generate), grpcio-health-checking
# and grpcio-reflection (clients of the server's health and reflection
# services), with the protobuf runtime grpcio-tools needs; pyyaml (the
# deploy/ tests read alert rules and Kubernetes manifests); openai (the
# official client, against the HTTP endpoint in tests/server/test_http_*.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(build-essential cmake ninja-build pkg-config libabsl-dev
  libspdlog-dev libgtest-dev libgmock-dev libgrpc++-dev protobuf-compiler
  protobuf-compiler-grpc libprotobuf-dev prometheus-cpp-dev libssl-dev nlohmann-json3-dev
  libcpp-httplib-dev clang-14 libclang-rt-14-dev prometheus python3-venv unzip)
PY_PACKAGES=(numpy==2.3.5 pytest==8.4.2 llama-cpp-python==0.3.36
  grpcio==1.76.0 grpcio-tools==1.76.0 grpcio-health-checking==1.76.0
  grpcio-reflection==1.76.0 protobuf==6.33.6 pyyaml==6.0.3 openai==1.109.1)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a system Prometheus (:9090) and node exporter (:9100)
  # where systemd runs; the tests start their own on free ports, so a
  # service installed just now for them is stopped and disabled again.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
fi

if [ "${CONCLAVE_SKIP_PYTHON:-0}" != 1 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating Python venv at $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import llama_cpp, numpy, pytest, grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha, yaml, openai" 2>/dev/null; then
    log "installing Python test packages (llama-cpp-python builds llama.cpp: a few minutes)"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}"
  fi
fi
