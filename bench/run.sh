#!/usr/bin/env bash
# The one benchmark command: edge vs nginx (and edge HTTP/3 vs HTTP/1.1).
#   bench/run.sh [--quick] [run.py options...]     (bench/run.py --help lists them)
# Installs what it needs, builds the release binaries, then runs bench/run.py, which
# prints a markdown report and writes it to bench/results/latest.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
have nginx   || missing+=(nginx)
have wrk     || missing+=(wrk)
have h2load  || missing+=(nghttp2-client)
have openssl || missing+=(openssl)
have python3 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]} with apt-get" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# oha is only needed for the HTTP/3 scenarios (h3-1k, h3-1m).
want_h3=1
prev=""
for a in "$@"; do
    case "$a" in
        --no-h3|--no-edge) want_h3=0 ;;
        --only=*) case "${a#--only=}" in *h3*) ;; *) want_h3=0 ;; esac ;;
    esac
    if [ "$prev" = "--only" ]; then case "$a" in *h3*) ;; *) want_h3=0 ;; esac; fi
    prev=$a
done

OHA="$ROOT/bench/.tools/bin/oha"
if [ "$want_h3" = 1 ] && [ ! -x "$OHA" ]; then
    echo "bench: building oha with HTTP/3 support into bench/.tools (takes ~6 minutes, once)" >&2
    cargo install oha --locked --features http3 --root "$ROOT/bench/.tools"
fi

echo "bench: cargo build --release -p edge-runtime -p origin" >&2
cargo build --release -p edge-runtime -p origin

export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec python3 "$ROOT/bench/run.py" "$@"
