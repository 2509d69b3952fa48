#!/usr/bin/env bash
# The soak: the node under mixed h1/h2/h3 load while modules are hot-swapped, the cache
# purged and the config reloaded; reports errors, memory and file descriptors.
#   bench/soak.sh [--seconds 600] [--op-interval 10]
# Installs wrk, h2load and openssl (apt) and oha (cargo, into bench/.tools), builds the
# release binaries, then runs bench/soak.py (report: stdout and bench/results/soak.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
if [ ! -x bench/.tools/bin/oha ]; then
    echo "soak: building oha with HTTP/3 support into bench/.tools (~6 minutes, once)" >&2
    cargo install oha --locked --features http3 --root bench/.tools
fi
rustup target add wasm32-wasip2 wasm32-unknown-unknown >&2
cargo build --release -p edge-runtime -p origin >&2
exec python3 bench/soak.py "$@"
