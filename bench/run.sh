#!/usr/bin/env bash
# The one benchmark command: edge vs nginx (and edge HTTP/3 vs HTTP/1.1), proxying and
# cache hits (+ Varnish), a miss storm, latency at a fixed rate below saturation, and the
# WAF (edge + CRS v4 vs nginx + ModSecurity 3 + CRS 3.3.4).
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

# oha is only needed for the HTTP/3 scenarios (h3-1k, h3-1m, hit-h3-1k, hit-h3-1m, lat-h3-1k)
# and the fixed-rate latency scenarios (lat-h1-1k, lat-h2-1k, lat-h3-1k);
# Varnish only for hit-h1-1k and hit-h1-1m (an optional peer: run.py notes its absence).
# With --no-h3 / --no-edge and no --only naming lat-h1-1k or lat-h2-1k, oha is not built
# (run.py then leaves lat-h1-1k and lat-h2-1k out with a note unless oha is already there).
no_h3=0
no_edge=0
only=""
want_varnish=1
prev=""
for a in "$@"; do
    case "$a" in
        --no-edge) no_h3=1; no_edge=1 ;;
        --no-h3) no_h3=1 ;;
        --no-varnish|--fake-origin) want_varnish=0 ;;
        --only=*) only="${a#--only=}"
                  case "${a#--only=}" in *hit-h1*) ;; *) want_varnish=0 ;; esac ;;
    esac
    if [ "$prev" = "--only" ]; then
        only="$a"
        case "$a" in *hit-h1*) ;; *) want_varnish=0 ;; esac
    fi
    prev=$a
done
if [ -n "$only" ]; then
    case "$only" in
        *lat-h1*|*lat-h2*) want_h3=1 ;;
        *h3*) want_h3=$((1 - no_h3)) ;;
        *) want_h3=0 ;;
    esac
else
    want_h3=$((1 - no_h3))
fi

if [ "$want_varnish" = 1 ] && ! have varnishd; then
    # Debian's package also enables a varnish.service on systemd hosts (not used here).
    echo "bench: installing varnish with apt-get (optional peer for the cache-hit scenarios)" >&2
    if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq varnish; }; then
        echo "bench: varnish did not install; the report will say it was left out" >&2
    fi
fi

# The nginx + ModSecurity peer of waf-h1-1k (run unless --only leaves it out; --no-edge and
# --fake-origin skip it): Debian's ModSecurity-nginx connector and CRS (3.3.4 on Debian 12).
want_waf=1
if [ -n "$only" ]; then
    case "$only" in *waf*) ;; *) want_waf=0 ;; esac
fi
for a in "$@"; do
    case "$a" in --fake-origin) want_waf=0 ;; esac
done
if [ "$no_edge" = 1 ]; then want_waf=0; fi
if [ "$want_waf" = 1 ] && { [ ! -e /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] ||
                            [ ! -d /usr/share/modsecurity-crs/rules ]; }; then
    echo "bench: installing libnginx-mod-http-modsecurity modsecurity-crs with apt-get (WAF peer)" >&2
    if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
               libnginx-mod-http-modsecurity modsecurity-crs; }; then
        echo "bench: the ModSecurity packages did not install; the report will say nginx + ModSecurity was left out" >&2
    fi
fi

OHA="$ROOT/bench/.tools/bin/oha"
if [ "$want_h3" = 1 ] && [ ! -x "$OHA" ]; then
    echo "bench: building oha with HTTP/3 support into bench/.tools (takes ~6 minutes, once)" >&2
    cargo install oha --locked --features http3 --root "$ROOT/bench/.tools"
fi

# The standard modules embedded in `edge` build for wasm32-unknown-unknown (made into
# components), the test module also for wasm32-wasip2.
rustup target add wasm32-wasip2 wasm32-unknown-unknown >&2
echo "bench: cargo build --release -p edge-runtime -p origin" >&2
cargo build --release -p edge-runtime -p origin

export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec python3 "$ROOT/bench/run.py" "$@"
