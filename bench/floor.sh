#!/usr/bin/env bash
# The HTTP/1.1 floors: the node against a bare hyper proxy (pooled client and
# in-task client) and nginx, in front of one origin (bench/floor.py says how).
#   bench/floor.sh [proxy|hit] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
rustup target add wasm32-wasip2 wasm32-unknown-unknown
cargo build --release -p edge-runtime -p origin --bins --example floor_proxy
exec python3 bench/floor.py "$@"
