#!/usr/bin/env python3
"""Edge vs nginx benchmark harness (python3 stdlib only).

Method: /work/shared/design/BENCHMARKING.md. In short: both servers run with one worker in
front of the same origin process; runs alternate A/B/A/B after a warm-up; the primary metric
is server CPU per request (utime+stime from /proc/PID/stat over the run, divided by the 2xx
responses); the report shows medians per server and the ratio edge/nginx.

Normally started by bench/run.sh, which installs the tools and builds the binaries.
Progress goes to stderr; the markdown report goes to stdout and bench/results/latest.md.

Scenarios (--only ids):
  proxying, no cache:  h1-1k, h2-1k, h1-1m (edge vs nginx), h3-1k, h3-1m (edge h3 vs h1)
  cache hits:          hit-h1-1k, hit-h1-1m (edge vs nginx proxy_cache vs varnish),
                       hit-h2-1k, hit-h2-1m (edge vs nginx proxy_cache), hit-h3-1k, hit-h3-1m (edge h3 vs h1)
  miss storm:          storm (1,000 concurrent requests for one new object: origin fetches)
  Wasm modules:        mods-h1-1k (1 KiB cache hits through 0, 1 and 4 no-op modules: the
                       CPU they add per request, wrk at saturation), mods-rate-h1-1k (the same
                       at a fixed 5,000 req/s with oha over TLS)
  WAF:                 waf-h1-1k (1 KiB segment cache hits with a token query and a player's request
                       fields, wrk: edge without and with the waf module running CRS v4 at PL1,
                       blocking; nginx proxy_cache without and with ModSecurity 3 + Debian's CRS
                       3.3.4 at PL1; an attack gets 403 and the request 200 before measuring)
  fixed-rate latency:  lat-h1-1k, lat-h2-1k (edge vs nginx over TLS), lat-h3-1k (edge h3 vs h1):
                       `oha -q RATE --latency-correction` (default 5,000 req/s, --lat-rate), 16
                       connections, 1 KiB; each server both proxied (uncached) and as cache hits;
                       p50/p90/p99/p99.9 (whole run) and steady p99/p99.9 (without the first
                       second: connection set-up), achieved rate, errors, server CPU µs/req
The cache scenarios send `Host: cache.bench` (h2load: `:authority`, oha: --connect-to), which
the edge routes to a caching route and nginx to a server block with proxy_cache; every other
request goes to the uncached proxy as before. Varnish (Debian package `varnish`) is an extra
peer for hit-h1-1k and hit-h1-1m when varnishd is installed (else noted and skipped).

Options for testing the harness itself (not for real numbers):
  --no-edge      benchmark nginx only (skips the HTTP/3 scenario)
  --fake-origin  use a second nginx serving static files as the origin instead of
                 target/release/origin (skips the cache scenarios: they need /object, /counts)
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime as dt
import errno
import http.client
import json
import os
import platform
import queue
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 20.0
MAX_BAD_RATIO = 0.001  # non-2xx + errors above 0.1% of requests fails the benchmark
KIB = 1024
MIB = 1024 * 1024

# Cache scenarios: this Host selects the caching route of the edge and the proxy_cache
# server of nginx; the objects stay fresh for the whole run (max-age=3600).
CACHE_HOST = "cache.bench"
# Caching routes with a chain of no-op modules (scenario mods-h1-1k), by chain length.
MODS_HOSTS = {1: "mods1.bench", 4: "mods4.bench"}
HIT_PATHS = {KIB: "/object/hit1k?cc=max-age%3D3600&size=1024",
             MIB: "/object/hit1m?cc=max-age%3D3600&size=1048576"}
# WAF scenario (waf-h1-1k): a benign 1 KiB media segment request as a player sends it, served
# as a cache hit through the edge without WAF (Host cache.bench), the edge with the `waf`
# module (CRS v4, PL1, blocking; Host waf.bench), nginx (proxy_cache, cache.bench) and nginx
# with ModSecurity 3 + the Debian CRS 3.3.4 (a second nginx instance, same proxy_cache setup).
WAF_HOST = "waf.bench"
WAF_PATH = ("/object/seg-00042.m4s?cc=max-age%3D3600&size=1024&ct=video%2Fmp4&exp=1767225600"
            "&token=3f2a9c4e7b1d8f60a5e2c9b47d13f8e6a0b5c2d9e4f7a1b3c6d8e0f2a4b6c8d0")
WAF_HEADERS = [
    ("User-Agent", "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)"),
    ("Accept", "*/*"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "identity"),
    ("X-Playback-Session-Id", "6E1C2B7A-3D44-4F0B-9A51-2C8E7D90B1F3"),
]
# The sanity check's attack: the segment request with a classic SQL injection argument.
WAF_ATTACK_QUERY = "id=1%27%20OR%20%271%27%3D%271"
WAF_EDGE_CRS = ROOT / "modules" / "waf" / "crs"
# Debian packages for the nginx peer: libnginx-mod-http-modsecurity (ModSecurity-nginx
# connector + libmodsecurity3) and modsecurity-crs (CRS 3.3.4).
MODSEC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
MODSEC_CONF = Path("/etc/nginx/modsecurity.conf")  # the package's recommended configuration
MODSEC_UNICODE = Path("/etc/nginx/unicode.mapping")
DEBIAN_CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
DEBIAN_CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
DEBIAN_CRS_EXCLUSIONS = (Path("/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"),
                         Path("/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"))
STORM_VIEWERS = 1000
STORM_QUERY = "cc=max-age%3D600&size=1048576&delay_ms=300"
STORM_DELAY_MS = 300
# Fixed-rate latency scenarios (lat-*): oha -q RATE, well below saturation (at 5,000 req/s one
# server worker used 11-39% of a core here, h3 proxying the most; see BENCHMARKING.md).
LAT_RATE_DEFAULT = 5000
LAT_CONNS = 16
LAT_PERCENTILES = (("p50", "p50 ms"), ("p90", "p90 ms"), ("p99", "p99 ms"), ("p99.9", "p99.9 ms"))
LAT_LEGS = {"proxy": "proxied", "hit": "hit"}  # leg id -> row suffix
LAT_MIN_RATE_SHARE = 0.95  # achieved/target below this: flagged (the run was not at the set rate)
# oha opens its connections inside the measured window: with --latency-correction the requests
# due during those handshakes count their wait, a burst of slow responses in the first ~0.1 s
# that sets p99.9 (and much of p99) of a 10 s run. The "steady" columns leave out requests due
# in the first LAT_SETTLE_S seconds (at most a third of the run), from oha's per-request records.
LAT_SETTLE_S = 1.0
LAT_STEADY = (("p99", "steady p99 ms"), ("p99.9", "steady p99.9 ms"))


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Process management: every child gets its own session/process group so we can kill it
# (and anything it forked, e.g. nginx workers) by group id, and only ours.


class Procs:
    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        with self._lock:
            self._procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 3.0) -> None:
        # Signal the group only while our child is still running and unreaped: its pid (the
        # group id) can't have been reused by then.
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            if p.poll() is not None:
                break
            try:
                os.killpg(p.pid, sig)  # pgid == sid == pid because of start_new_session
            except (ProcessLookupError, PermissionError):
                break
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Leftovers of that session (e.g. an nginx worker whose master died): kill them by pid.
        for pid in session_members(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with self._lock:
            if p in self._procs:
                self._procs.remove(p)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
        for p in procs:
            self.stop(p)


def session_members(sid: int) -> list[int]:
    """Processes whose process group and session are both `sid` (i.e. descendants of a child
    we started with start_new_session that stayed in its group)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == sid:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2 :].split()  # rest[0] = field 3
        if int(rest[5 - 3]) == sid and int(rest[6 - 3]) == sid:
            found.append(int(d))
    return found


PROCS = Procs()
atexit.register(PROCS.stop_all)


def _on_signal(signum, _frame):
    # Turn the signal into an exception so that finally-blocks run, then atexit.
    raise SystemExit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# --------------------------------------------------------------------------------------
# /proc helpers


def proc_cpu_ticks(pid: int) -> int:
    """utime + stime (fields 14 and 15 of /proc/PID/stat), in clock ticks, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return int(rest[14 - 3]) + int(rest[15 - 3])


def proc_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
            if int(data[data.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(d))
        except OSError:
            continue
    return kids


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as f:
        a, b, c = f.read().split()[:3]
    return float(a), float(b), float(c)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# Servers


class Server:
    """A process (tree) whose CPU and peak RSS we measure."""

    def __init__(self, name: str, proc: subprocess.Popen, include_children: bool = False,
                 errlog: Path | None = None):
        self.name = name
        self.errlog = errlog
        self.proc = proc
        self.include_children = include_children
        # The edge in waf-h1-1k: (admin URL, bearer token) for /metrics; nginx + ModSecurity:
        # the path of its audit log. Only used by the WAF checks.
        self.admin: tuple[str, str] | None = None
        self.audit_log: Path | None = None

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        if self.include_children:
            pids += proc_children(self.proc.pid)
        return pids

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            msg = f"{self.name} exited unexpectedly (rc={self.proc.returncode})"
            if self.errlog is not None:
                msg += f"\n--- stderr tail ({self.errlog}) ---\n{tail(self.errlog)}"
            raise BenchError(msg)

    def cpu_ticks(self) -> int:
        self.check_alive()
        total = 0
        for pid in self.pids():
            try:
                total += proc_cpu_ticks(pid)
            except OSError:
                if pid == self.proc.pid:
                    raise
        return total

    def peak_rss_kib(self) -> int | None:
        vals = [v for v in (proc_status_kib(p, "VmHWM") for p in self.pids()) if v is not None]
        return max(vals) if vals else None


def tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def start_json_ready(name: str, argv: list[str], logdir: Path,
                     ready_timeout: float = READY_TIMEOUT) -> tuple[Server, dict]:
    """Start a project binary that prints one JSON line {"event":"ready",...} on stdout."""
    out_log = logdir / f"{name}.stdout.log"
    err_log = logdir / f"{name}.stderr.log"
    log(f"starting {name}: {shlex.join(argv)}")
    err_f = open(err_log, "wb")
    proc = PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=err_f, cwd=str(ROOT), text=True, bufsize=1)
    err_f.close()
    q: queue.Queue = queue.Queue()

    def reader() -> None:
        with open(out_log, "w") as f:
            for line in proc.stdout:  # keep draining so the pipe never fills up
                f.write(line)
                f.flush()
                s = line.strip()
                if s.startswith("{"):
                    try:
                        obj = json.loads(s)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and obj.get("event") == "ready":
                        q.put(obj)
        q.put(None)

    threading.Thread(target=reader, name=f"{name}-stdout", daemon=True).start()
    try:
        obj = q.get(timeout=ready_timeout)
    except queue.Empty:
        PROCS.stop(proc)
        raise BenchError(
            f"{name} did not print its ready line within {ready_timeout:.0f} s\n"
            f"--- stderr tail ({err_log}) ---\n{tail(err_log)}"
        )
    if obj is None:
        proc.wait(timeout=5)
        raise BenchError(
            f"{name} exited (rc={proc.returncode}) before printing its ready line\n"
            f"--- stderr tail ({err_log}) ---\n{tail(err_log)}"
        )
    log(f"{name} ready: {json.dumps(obj)}")
    # Children count too (none expected from the Rust binaries; harmless if there are none).
    return Server(name, proc, include_children=True, errlog=err_log), obj


def wait_tcp(host: str, port: int, server: Server, errlog: Path, deadline: float) -> None:
    while True:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited (rc={server.proc.returncode}) before listening on {port}\n"
                f"--- {errlog} ---\n{tail(errlog)}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name} did not listen on {host}:{port} within {READY_TIMEOUT:.0f} s\n"
                f"--- {errlog} ---\n{tail(errlog)}"
            )
        time.sleep(0.05)


def nginx_binary() -> str:
    p = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not p:
        raise BenchError("nginx not found (bench/run.sh installs it: apt-get install -y nginx)")
    return p


def nginx_version(nginx: str) -> tuple[int, ...]:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise BenchError(f"cannot parse nginx version from {out!r}")
    return tuple(int(x) for x in m.groups())


def render(template: str, values: dict[str, str]) -> str:
    # Drop full-line comments first so placeholders named in them are not filled in.
    template = "".join(l for l in template.splitlines(keepends=True) if not l.lstrip().startswith("#"))
    for k, v in values.items():
        template = template.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", template)
    if left:
        raise BenchError(f"unfilled placeholders in nginx template: {sorted(set(left))}")
    return template


def start_nginx(name: str, conf_text: str, prefix: Path, ports: list[int]) -> Server:
    nginx = nginx_binary()
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    errlog = prefix / "logs" / "error.log"
    base = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(errlog)]
    t = subprocess.run(base + ["-t"], capture_output=True, text=True)
    if t.returncode != 0:
        raise BenchError(f"nginx -t failed for {name}:\n{t.stderr}")
    log(f"starting {name}: {shlex.join(base)}")
    with open(prefix / "logs" / "stderr.log", "wb") as err_f:
        proc = PROCS.spawn(base, stdout=subprocess.DEVNULL, stderr=err_f)
    srv = Server(name, proc, include_children=True, errlog=errlog)
    deadline = time.monotonic() + READY_TIMEOUT
    for port in ports:
        wait_tcp("127.0.0.1", port, srv, errlog, deadline)
    # Wait for the worker to exist so CPU/RSS cover it.
    while not proc_children(proc.pid):
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: no worker process appeared")
        time.sleep(0.05)
    log(f"{name} ready on ports {ports} (master pid {proc.pid}, workers {proc_children(proc.pid)})")
    return srv


def start_fake_origin(tmp: Path) -> tuple[Server, str]:
    """Harness self-test only: nginx serving deterministic static files as the origin."""
    www = tmp / "fake-origin" / "www"
    (www / "bytes").mkdir(parents=True, exist_ok=True)
    for n in (KIB, MIB):
        pattern = bytes(range(256))
        (www / "bytes" / str(n)).write_bytes((pattern * (n // 256 + 1))[:n])
    port = free_port()
    prefix = tmp / "fake-origin"
    conf = f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/cb; proxy_temp_path {prefix}/tmp/p;
    fastcgi_temp_path {prefix}/tmp/f; uwsgi_temp_path {prefix}/tmp/u; scgi_temp_path {prefix}/tmp/s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    sendfile on;
    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        etag on;
        add_header Cache-Control "public, max-age=60";
        location = /health {{ return 200 "ok\\n"; }}
    }}
}}
"""
    srv = start_nginx("fake-origin", conf, prefix, [port])
    return srv, f"http://127.0.0.1:{port}"


def modsec_missing() -> list[str]:
    """What the nginx + ModSecurity peer needs from Debian and is not installed."""
    need = [(MODSEC_MODULE, "libnginx-mod-http-modsecurity"), (MODSEC_CONF, "libnginx-mod-http-modsecurity"),
            (DEBIAN_CRS_SETUP, "modsecurity-crs"), (DEBIAN_CRS_RULES, "modsecurity-crs")]
    return sorted({pkg for path, pkg in need if not path.exists()})


def crs_version(setup: Path) -> str:
    """"OWASP CRS ver.X" from the first lines of a crs-setup.conf."""
    try:
        m = re.search(r"OWASP (?:ModSecurity )?(?:Core Rule Set|CRS) ver\.(\S+)", setup.read_text()[:2000])
    except OSError:
        return "n/a"
    return m.group(1) if m else "n/a"


def deb_version(pkg: str) -> str:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "n/a"


def write_modsec_rules(prefix: Path) -> Path:
    """The rules file of the nginx + ModSecurity peer: the package's recommended
    modsecurity.conf (SecRuleEngine On instead of DetectionOnly, the audit log in the run's
    directory, the unicode map by absolute path), then what Debian's owasp-crs.load includes
    (crs-setup.conf, the exclusion files, rules/*.conf) with tx.paranoia_level=1 after the
    setup, as crs-setup.conf's own example does."""
    mdir = prefix / "modsec"
    mdir.mkdir(parents=True, exist_ok=True)
    text = MODSEC_CONF.read_text()
    edits = [(r"(?m)^SecRuleEngine\s+\S+", "SecRuleEngine On"),
             (r"(?m)^SecAuditLog\s+\S+", f"SecAuditLog {prefix / 'logs' / 'modsec_audit.log'}"),
             (r"(?m)^SecUnicodeMapFile\s+\S+", f"SecUnicodeMapFile {MODSEC_UNICODE}")]
    for rx, repl in edits:
        text, n = re.subn(rx, repl, text)
        if n != 1:
            raise BenchError(f"{MODSEC_CONF}: expected one line matching {rx!r}, found {n}")
    if not re.search(r"(?m)^SecRequestBodyAccess\s+On", text):
        raise BenchError(f"{MODSEC_CONF}: SecRequestBodyAccess is not On")
    (mdir / "modsecurity.conf").write_text(text)
    lines = [f"Include {mdir / 'modsecurity.conf'}",
             f"Include {DEBIAN_CRS_SETUP}",
             'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"']
    excl_before, excl_after = DEBIAN_CRS_EXCLUSIONS
    if excl_before.exists():
        lines.append(f"Include {excl_before}")
    lines.append(f"Include {DEBIAN_CRS_RULES}/*.conf")
    if excl_after.exists():
        lines.append(f"Include {excl_after}")
    main = mdir / "main.conf"
    main.write_text("\n".join(lines) + "\n")
    return main


def start_nginx_modsec(tmp: Path, origin_hostport: str, cache_path: Path) -> tuple[Server, str]:
    prefix = tmp / "nginx-modsec"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    rules = write_modsec_rules(prefix)
    port = free_port()
    conf_text = render((BENCH / "nginx-modsec.conf.tmpl").read_text(), {
        "PREFIX": str(prefix), "ORIGIN_HOSTPORT": origin_hostport, "PLAIN_PORT": str(port),
        "CACHE_DIR": str(cache_path), "MODSEC_MODULE": str(MODSEC_MODULE), "RULES_FILE": str(rules),
        "WAF_HOST": WAF_HOST})
    srv = start_nginx("nginx-modsec", conf_text, prefix, [port])
    srv.audit_log = prefix / "logs" / "modsec_audit.log"
    return srv, f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------
# Sanity checks over the stdlib HTTP client (HTTP/1.1, plain or TLS)


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    status, _, body = fetch_full(url, timeout=timeout)
    return status, body


def fetch_full(url: str, host: str | None = None, timeout: float = 10.0,
               headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET over HTTP/1.1 (plain or TLS) with an optional Host header and extra request fields;
    response header names lower-cased."""
    m = re.match(r"(https?)://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise BenchError(f"bad URL {url}")
    scheme, addr, port, path = m.group(1), m.group(2), int(m.group(3)), m.group(4) or "/"
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(addr, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        req_headers = {"Host": host} if host else {}
        req_headers.update(headers or [])
        conn.request("GET", path, headers=req_headers)
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def cache_status(headers: dict[str, str]) -> str:
    """How a response says it was served: edge `X-Cache`, nginx `X-Cache-Status` (added by
    bench/nginx.conf.tmpl), Varnish `X-Varnish` (two transaction ids on a hit)."""
    if "x-cache" in headers:
        return headers["x-cache"].strip().upper()
    if "x-cache-status" in headers:
        return headers["x-cache-status"].strip().upper()
    if "x-varnish" in headers:
        return "HIT" if len(headers["x-varnish"].split()) >= 2 else "MISS"
    return "?"


def origin_count(origin_url: str, path: str) -> int:
    """Requests the origin saw for `path` (its /counts endpoint; the query is not part of it)."""
    try:
        status, body = fetch(f"{origin_url}/counts?path={path}")
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"GET {origin_url}/counts?path={path} failed: {e!r}")
    try:
        if status != 200:
            raise ValueError(status)
        return int(body.decode().strip())
    except ValueError:
        raise BenchError(f"origin /counts?path={path} answered {status} {body[:200]!r} (want a number)")


def fs_type(path: Path) -> str:
    """File system type of the mount holding `path` (longest mount-point prefix)."""
    best, kind = "", "unknown"
    try:
        target = str(path.resolve())
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def varnishd_binary() -> str | None:
    p = shutil.which("varnishd")
    if p:
        return p
    for cand in ("/usr/sbin/varnishd", "/usr/local/sbin/varnishd"):
        if os.access(cand, os.X_OK):
            return cand
    return None


# Varnish's own parameters beyond the brief's `-s malloc,256m -p thread_pools=1`: none. Its
# model is a worker thread per request in progress (thread_pool_min defaults to 100 threads),
# so "one worker" cannot be matched exactly; one pool is the closest, and CPU per request
# (all varnishd processes and threads) is the comparable figure.
VARNISH_PARAMS = ["-p", "thread_pools=1"]


def start_varnish(tmp: Path, origin_hostport: str) -> tuple[Server, str, list[str]]:
    varnishd = varnishd_binary()
    if not varnishd:
        raise BenchError("varnishd not found")
    port = free_port()
    workdir = tmp / "varnish"
    argv = [varnishd, "-F", "-a", f"127.0.0.1:{port}", "-b", origin_hostport, "-s", "malloc,256m",
            "-n", str(workdir), *VARNISH_PARAMS]
    errlog = tmp / "varnish.log"
    log(f"starting varnish: {shlex.join(argv)}")
    with open(errlog, "wb") as f:
        proc = PROCS.spawn(argv, stdout=f, stderr=subprocess.STDOUT)
    # The manager forks the cache process ("child"), which does the work: count both.
    srv = Server("varnish", proc, include_children=True, errlog=errlog)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        srv.check_alive()
        try:
            status, _ = fetch(f"{base}/health", timeout=2.0)
            if status == 200 and proc_children(proc.pid):
                break
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"varnish did not answer GET /health within {READY_TIMEOUT:.0f} s\n"
                             f"--- {errlog} ---\n{tail(errlog)}")
        time.sleep(0.1)
    log(f"varnish ready on port {port} (manager pid {proc.pid}, child {proc_children(proc.pid)})")
    return srv, base, argv


def sanity_check(targets: dict[str, str]) -> None:
    bodies = {}
    for label, base in targets.items():
        for n in (KIB, MIB):
            try:
                status, body = fetch(f"{base}/bytes/{n}")
            except (OSError, http.client.HTTPException) as e:
                raise BenchError(f"sanity check: GET {base}/bytes/{n} via {label} failed: {e!r}")
            if status != 200 or len(body) != n:
                raise BenchError(
                    f"sanity check: GET {base}/bytes/{n} via {label} gave status {status}, "
                    f"{len(body)} bytes (want 200, {n})"
                )
            bodies.setdefault(n, {})[label] = body
    for n, by in bodies.items():
        if len({b for b in by.values()}) != 1:
            raise BenchError(f"sanity check: /bytes/{n} bodies differ between {sorted(by)}")
    log(f"sanity check ok: /bytes/1024 and /bytes/1048576 identical via {', '.join(targets)}")


# --------------------------------------------------------------------------------------
# Load generators. Each returns a dict with: requests (responses counted by the tool),
# ok (2xx), non2xx, errors, duration_s, rps, p50_ms, p99_ms, info.

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _to_seconds(num: str, unit: str) -> float:
    return float(num) * _TIME_UNITS[unit]


def parse_wrk(out: str) -> dict:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGT]?B) read", out)
    if not m:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    requests = int(m.group(1))
    duration = _to_seconds(m.group(2), m.group(3))
    lat = {}
    block = re.search(r"Latency Distribution\s*\n((?:\s+\d+%\s+\S+\s*\n)+)", out)
    if block:
        for pct, val in re.findall(r"(\d+)%\s+([\d.]+\w+)", block.group(1)):
            mm = re.match(r"([\d.]+)(\w+)", val)
            lat[int(pct)] = _to_seconds(mm.group(1), mm.group(2)) * 1e3
    non2xx = int(re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out).group(1)) if "Non-2xx" in out else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tr_m = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    info = {}
    if tr_m:
        info["wrk_transfer_per_sec"] = tr_m.group(1) + tr_m.group(2)
    return {
        "requests": requests,
        "ok": requests - non2xx,  # wrk counts 3xx as success; /bytes never redirects
        "non2xx": non2xx,
        "errors": errors,
        "duration_s": duration,
        "rps": float(rps_m.group(1)) if rps_m else requests / duration,
        "p50_ms": lat.get(50),
        "p99_ms": lat.get(99),
        "info": info,
    }


def percentile(sorted_vals: list, p: float):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def parse_h2load(out: str, log_file: Path | None) -> dict:
    fin = re.search(r"finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s", out)
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    sc = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (fin and req and sc):
        raise BenchError(f"cannot parse h2load output:\n{out}")
    duration = _to_seconds(fin.group(1), fin.group(2))
    total, started, done, succeeded, failed, errored, timeout = (int(x) for x in req.groups())
    s2, s3, s4, s5 = (int(x) for x in sc.groups())
    info = {}
    for key, rx in (("tls", r"TLS Protocol: (\S+)"), ("cipher", r"Cipher: (\S+)"), ("alpn", r"Application protocol: (\S+)")):
        mm = re.search(rx, out)
        if mm:
            info[key] = mm.group(1)
    if info.get("alpn") not in (None, "h2", "h2c"):
        raise BenchError(f"h2load negotiated {info.get('alpn')!r}, not h2")
    tfr = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if tfr:
        info["time_for_request_min_max_mean_sd"] = " ".join(tfr.groups())
    p50 = p99 = None
    if log_file is not None and log_file.exists():
        # Columns: start time (µs since epoch) \t status \t µs until end of response.
        # Failed requests are logged with status -1; keep 2xx only.
        lat = []
        with open(log_file) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
        lat.sort()
        if lat:
            p50 = percentile(lat, 50) / 1e3
            p99 = percentile(lat, 99) / 1e3
        info["log_rows_2xx"] = len(lat)
    # "errored"/"timeout" are subsets of "failed"; failed also includes 4xx/5xx responses.
    # Requests still in flight when -D ends are "started" but not "done": not errors.
    non2xx = s3 + s4 + s5
    errors = max(0, failed - s4 - s5) + timeout
    return {
        "requests": done,
        "ok": s2,
        "non2xx": non2xx,
        "errors": errors,
        "duration_s": duration,
        "rps": s2 / duration if duration else 0.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "info": info,
    }


def parse_oha(out: str, duration: float, all_percentiles: bool = False) -> dict:
    start = out.find("{")
    if start < 0:
        raise BenchError(f"no JSON in oha output:\n{out[-2000:]}")
    try:
        d = json.loads(out[start:])
    except ValueError as e:
        raise BenchError(f"cannot parse oha JSON ({e}):\n{out[-2000:]}")
    codes = {int(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
    errs = d.get("errorDistribution") or {}
    # Requests cut off by -z are reported as "aborted due to deadline": not server errors.
    deadline = sum(v for k, v in errs.items() if "deadline" in k.lower())
    errors = sum(v for k, v in errs.items() if "deadline" not in k.lower())
    pct = d.get("latencyPercentiles") or {}
    info = {"oha_reported_total_s": (d.get("summary") or {}).get("total"),
            "aborted_at_deadline": deadline}
    if errs:
        info["error_kinds"] = {k: v for k, v in errs.items()}
    extra = {}
    if all_percentiles:
        # lat-* scenarios: oha's latencyPercentiles (seconds, over every completed response;
        # keys p10, p25, p50, ... p99.9, p99.99; null/NaN when empty), converted to ms.
        extra["lat_ms"] = {k: (pct[k] * 1e3 if isinstance(pct.get(k), (int, float)) and pct[k] == pct[k] else None)
                           for k, _ in LAT_PERCENTILES}
    return {
        **extra,
        "requests": ok + non2xx,
        "ok": ok,
        "non2xx": non2xx,
        "errors": errors,
        # oha's own req/s is wrong for HTTP/3 (its total includes the ~30 s QUIC idle wait):
        # throughput is successful responses / the -z duration.
        "duration_s": duration,
        "rps": ok / duration,
        "p50_ms": pct["p50"] * 1e3 if pct.get("p50") is not None else None,
        "p99_ms": pct["p99"] * 1e3 if pct.get("p99") is not None else None,
        "info": info,
    }


def oha_steady_percentiles(db: Path, settle_s: float) -> dict:
    """Latency percentiles (ms) of the requests oha had due at or after `settle_s` into the run,
    from its --db-url records (`duration` is the corrected latency when --latency-correction is
    on; times are seconds since oha's start). Same index rule as oha's own percentiles."""
    if not db.exists():
        raise BenchError(f"oha wrote no request records to {db}")
    con = sqlite3.connect(str(db))
    try:
        rows = con.execute("SELECT COALESCE(start_latency_correction, start), duration FROM oha").fetchall()
    finally:
        con.close()
    vals = sorted(d for due, d in rows if due >= settle_s)
    n = len(vals)
    return {"lat_steady_ms": {k: (vals[min(n - 1, int(float(k[1:]) / 100.0 * n))] * 1e3 if n else None)
                              for k, _ in LAT_STEADY},
            "steady_rows": n, "records": len(rows), "settle_s": settle_s}


class Tools:
    def __init__(self) -> None:
        self.wrk = shutil.which("wrk")
        self.h2load = shutil.which("h2load")
        local_oha = BENCH / ".tools" / "bin" / "oha"
        self.oha = str(local_oha) if os.access(local_oha, os.X_OK) else shutil.which("oha")
        self.oha_json_flag = ["--output-format", "json"]
        self.oha_files = False
        if self.oha:
            help_text = subprocess.run([self.oha, "--help"], capture_output=True, text=True).stdout
            if "--output-format" not in help_text and "--json" in help_text:
                self.oha_json_flag = ["--json"]  # older oha releases
            if "--http-version" not in help_text:
                log("WARNING: this oha has no --http-version flag; the HTTP/3 scenario will fail")
            # lat-*: JSON to a file and per-request records (steady-state percentiles).
            self.oha_files = "--db-url" in help_text and "--output <" in help_text

    def require(self, name: str) -> str:
        path = getattr(self, name)
        if not path:
            hint = {"wrk": "apt-get install -y wrk", "h2load": "apt-get install -y nghttp2-client",
                    "oha": "cargo install oha --locked --features http3 --root bench/.tools"}[name]
            raise BenchError(f"{name} not found ({hint}; bench/run.sh does this)")
        return path

    def versions(self) -> dict[str, str]:
        def first_line(argv, use_stderr=False):
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return "n/a"
            text = (r.stderr if use_stderr else r.stdout) or r.stdout or r.stderr
            return text.strip().splitlines()[0] if text.strip() else "n/a"

        v = {}
        try:
            v["nginx"] = first_line([nginx_binary(), "-v"], use_stderr=True)
        except BenchError:
            v["nginx"] = "n/a"
        v["wrk"] = first_line([self.wrk, "-v"]) if self.wrk else "n/a"
        v["h2load"] = first_line([self.h2load, "--version"]) if self.h2load else "n/a"
        v["oha"] = first_line([self.oha, "--version"]) if self.oha else "n/a"
        v["openssl"] = first_line(["openssl", "version"])
        v["rustc"] = first_line(["rustc", "--version"])
        v["python"] = platform.python_version()
        return v


def split_url(url: str) -> tuple[str, str, int, str]:
    m = re.match(r"(https?)://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise BenchError(f"bad URL {url}")
    return m.group(1), m.group(2), int(m.group(3)), m.group(4) or "/"


def tool_cmd(tools: Tools, tool: str, url: str, duration: int, sc: dict, extra_log: Path | None = None,
             oha_out: tuple[Path, Path] | None = None) -> list[str]:
    # sc["host"] (cache scenarios): the virtual host to ask for. wrk sends it as Host;
    # h2load only overrides :authority with `-H ':authority: ...'` (with `-H 'host: ...'` it
    # sends both, and the edge routes by :authority); oha cannot send another Host over
    # HTTP/3 ("Failed to build request headers"), so it gets a URL with that host name and
    # --connect-to mapping it to the listener (:authority / Host = host:port, SNI = host).
    host = sc.get("host")
    if tool == "wrk":
        cmd = [tools.require("wrk"), f"-t{sc['threads']}", f"-c{sc['conns']}", f"-d{duration}s", "--latency"]
        if sc.get("wrk_timeout"):
            # wrk counts a response slower than --timeout (default 2 s) as a socket error.
            cmd += ["--timeout", sc["wrk_timeout"]]
        if host:
            cmd += ["-H", f"Host: {host}"]
        for k, v in sc.get("headers") or []:
            cmd += ["-H", f"{k}: {v}"]
        return cmd + [url]
    if tool == "h2load":
        cmd = [tools.require("h2load"), f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", str(duration)]
        if host:
            cmd += ["-H", f":authority: {host}"]
        if extra_log is not None:
            cmd += ["--log-file", str(extra_log)]
        return cmd + [url]
    if tool in ("oha-h3", "oha-h2", "oha-h1"):
        version = {"oha-h3": "3", "oha-h2": "2", "oha-h1": "1.1"}[tool]
        extra = []
        if host:
            scheme, addr, port, path = split_url(url)
            extra = ["--connect-to", f"{host}:{port}:{addr}:{port}"]
            url = f"{scheme}://{host}:{port}{path}"
        rate = []
        if sc.get("rate"):
            # lat-*: open-loop at a fixed rate; --latency-correction counts from the moment a
            # request was due, so time spent waiting for a free connection is latency too.
            rate = ["-q", str(sc["rate"]), "--latency-correction"]
        if oha_out is not None:
            # lat-*: the JSON to a file (oha writes "Storing results to ..." to stderr before
            # the JSON's last line reaches stdout) and every request to an SQLite file.
            rate += ["-o", str(oha_out[0]), "--db-url", str(oha_out[1])]
        return [tools.require("oha"), "--http-version", version, "--insecure", "-z", f"{duration}s",
                "-c", str(sc["conns"]), *rate, "--no-tui", *tools.oha_json_flag, *extra, url]
    raise AssertionError(tool)


def tool_host_header(tool: str, url: str, host: str) -> str:
    """The Host / :authority a load tool sends for `host` (see tool_cmd)."""
    if tool.startswith("oha"):
        return f"{host}:{split_url(url)[2]}"
    return host


# --------------------------------------------------------------------------------------
# Measurement


def run_tool(argv: list[str], timeout: float, out_path: Path) -> str:
    with open(out_path, "w") as f:
        p = PROCS.spawn(argv, stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            PROCS.stop(p)
            raise BenchError(f"{argv[0]} did not finish within {timeout:.0f} s: {shlex.join(argv)}")
        finally:
            PROCS.stop(p)
    out = out_path.read_text(errors="replace")
    if p.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} exited with {p.returncode}:\n{out[-3000:]}")
    return out


def warm_up(argv: list[str], seconds: int, out_path: Path) -> None:
    """Run the load briefly; results ignored. Killed if it outlives its duration (oha h3)."""
    with open(out_path, "w") as f:
        p = PROCS.spawn(argv, stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=seconds + 3)
        except subprocess.TimeoutExpired:
            pass
        finally:
            PROCS.stop(p)


def measure(label: str, server: Server, origin: Server, tool: str, argv: list[str], duration: int,
            tmp: Path, h2_log: Path | None = None, all_percentiles: bool = False,
            oha_out: tuple[Path, Path] | None = None) -> dict:
    for s in (server, origin):
        s.check_alive()
    la = loadavg()[0]
    out_path = tmp / f"out-{label}-{int(time.time() * 1000)}.txt"
    window_samples: dict[str, int] = {}
    timer = None
    if tool.startswith("oha"):
        # oha may linger ~30 s after -z ends (QUIC idle timeout): measure CPU over the
        # load window only, i.e. launch .. launch + duration (+0.2 s of slack).
        def sample_end():
            try:
                window_samples["server"] = server.cpu_ticks()
                window_samples["origin"] = origin.cpu_ticks()
            except (OSError, BenchError):
                pass

        timer = threading.Timer(duration + 0.2, sample_end)
        timer.daemon = True
    cpu0, ocpu0 = server.cpu_ticks(), origin.cpu_ticks()
    t0 = time.monotonic()
    if timer:
        timer.start()
    timeout = duration + (90 if tool == "oha-h3" else 60)
    try:
        out = run_tool(argv, timeout, out_path)
    except BaseException:
        if timer:
            timer.cancel()
        raise
    finally:
        if timer:
            timer.join()
    elapsed = time.monotonic() - t0
    if timer:
        if "server" not in window_samples:
            raise BenchError(f"{label}: could not sample CPU at the end of the load window")
        cpu1, ocpu1 = window_samples["server"], window_samples["origin"]
    else:
        cpu1, ocpu1 = server.cpu_ticks(), origin.cpu_ticks()
    if tool == "wrk":
        r = parse_wrk(out)
    elif tool == "h2load":
        r = parse_h2load(out, h2_log)
        if h2_log is not None and h2_log.exists():
            h2_log.unlink()  # tens of MB per run
    else:
        if oha_out is not None:
            json_path, db_path = oha_out
            if not json_path.exists():
                raise BenchError(f"{label}: oha wrote no JSON to {json_path}\n{out[-3000:]}")
            r = parse_oha(json_path.read_text(errors="replace"), float(duration), all_percentiles)
            steady = oha_steady_percentiles(db_path, min(LAT_SETTLE_S, duration / 3.0))
            r["lat_steady_ms"] = steady.pop("lat_steady_ms")
            r["info"].update(steady)
            json_path.unlink(missing_ok=True)
            db_path.unlink(missing_ok=True)  # a few MB per run
        else:
            r = parse_oha(out, float(duration), all_percentiles)
    r["tool_wall_s"] = elapsed
    r["load1_before"] = la
    cpu_s = (cpu1 - cpu0) / CLK_TCK
    ocpu_s = (ocpu1 - ocpu0) / CLK_TCK
    r["server_cpu_s"] = cpu_s
    r["origin_cpu_s"] = ocpu_s
    r["server_cpu_pct"] = 100.0 * cpu_s / r["duration_s"] if r["duration_s"] else None
    r["cpu_us_per_req"] = 1e6 * cpu_s / r["ok"] if r["ok"] else None
    r["origin_cpu_us_per_req"] = 1e6 * ocpu_s / r["ok"] if r["ok"] else None
    r["peak_rss_kib"] = server.peak_rss_kib()
    r["bad"] = r["non2xx"] + r["errors"]
    r["bad_ratio"] = r["bad"] / max(1, r["requests"] + r["errors"])
    r["cmd"] = shlex.join(argv)
    if r["bad_ratio"] > MAX_BAD_RATIO:
        raise BenchError(
            f"{label}: {r['non2xx']} non-2xx + {r['errors']} errors out of {r['requests']} "
            f"responses ({100 * r['bad_ratio']:.3f}% > {100 * MAX_BAD_RATIO:.1f}%)\n"
            f"command: {r['cmd']}\n{out[-3000:]}"
        )
    if r["ok"] == 0:
        raise BenchError(f"{label}: no successful responses\ncommand: {r['cmd']}\n{out[-3000:]}")
    out_path.unlink(missing_ok=True)
    return r


# --------------------------------------------------------------------------------------
# Scenarios


OHA_HOST_NOTE = (f"Both sides ask for `{CACHE_HOST}` the same way: oha gets `https://{CACHE_HOST}:PORT/...` and "
                 f"`--connect-to {CACHE_HOST}:PORT:127.0.0.1:PORT` (oha cannot override :authority over HTTP/3), "
                 "so both use the same cache entry (key host:port + path).")
STORM_NOTE = (f"Each run asks for a new object `/object/storm-...?{STORM_QUERY}` (1 MiB, the origin waits "
              f"{STORM_DELAY_MS} ms before answering) through the plaintext listener with `Host: {CACHE_HOST}`. "
              f"The driver (run.py, stdlib) opens {STORM_VIEWERS:,} TCP connections, waits until every one is "
              "established, then writes one `GET` (`Connection: close`) on each in a single loop — the "
              f"\"requests written in\" column, which must stay below the origin's {STORM_DELAY_MS} ms — and "
              "reads all responses concurrently; every response must be a complete 200. \"origin requests\" "
              "is the origin's own count for that path (`/counts?path=...`) after the last response; target 1. "
              "nginx runs the same storm on its own fresh objects with `proxy_cache_lock on` "
              "(waiting requests re-check the lock every 500 ms).")


LAT_NOTE = ("Open loop: `oha -q RATE --latency-correction` schedules requests at RATE/s whatever the "
            "responses do, and measures each from the moment it was due (waiting for one of the "
            "connections counts), so queueing shows up instead of slowing the client down as with "
            "the closed-loop tools of the other scenarios. Same client, connections and rate on every row; "
            "rows run strictly alternating (all rows once per round). p50 … p99.9 are oha's "
            "`latencyPercentiles` over every completed response of a run, including the requests that "
            "fell due while oha was still opening its connections (TLS/QUIC handshakes in the first "
            "~0.1 s: a burst of slow responses, about 0.5% of a 10 s run at 5,000 req/s, enough to set "
            "p99.9 and to lift p99). The steady columns leave those out: the same run's responses to "
            f"requests due ≥ {LAT_SETTLE_S:g} s after oha started (at most a third of the run), from its "
            "per-request records (`--db-url`), with oha's percentile rule. Tables show the median of each "
            "over the runs. Achieved req/s = 2xx ÷ the `-z` duration (requests still in flight at the "
            "deadline are aborted by oha, not counted as errors). At a fixed rate the CPU µs/req is "
            "higher than at saturation (less work per wake-up): compare rows, not with the other "
            "scenarios. \"proxied\" rows use the uncached route (`/bytes/1024`, every request goes to the "
            f"origin); \"hit\" rows ask `{CACHE_HOST}` for `{HIT_PATHS[KIB].split('?')[0]}` (fresh, served from "
            "the cache) the way hit-h3-1k does (oha URL with that host and `--connect-to`).")


# waf-h1-1k side labels.
WAF_EDGE_OFF = "edge (no WAF)"
WAF_EDGE = "edge + WAF"
WAF_NGINX_OFF = "nginx (no WAF)"
WAF_NGINX = "nginx + ModSecurity"
WAF_NOTE = ("Every side serves the same segment request from its cache: `GET " + WAF_PATH + "` with "
            + ", ".join(f"`{k}: {v}`" for k, v in WAF_HEADERS) + f" (wrk `-H`), Host `{CACHE_HOST}` for the sides "
            f"without WAF and `{WAF_HOST}` for the WAF sides. \"edge + WAF\": a `{WAF_HOST}` route, caching on, with "
            "the `waf` module (CRS v4 as shipped in `modules/waf/crs`: `crs-setup.conf.example` + `rules/`, "
            "`mode = \"blocking\"`, `paranoia = 1`); the WAF runs before the cache lookup, on every request. "
            "\"nginx + ModSecurity\": a second nginx (one worker, same proxy_cache settings as the cache.bench "
            "server) with `modsecurity on` and a `modsecurity_rules_file` that includes the package's "
            "`/etc/nginx/modsecurity.conf` (the recommended config) with `SecRuleEngine On` and the audit log "
            "moved into the run's directory, `tx.paranoia_level=1`, then Debian's CRS 3.3.4 "
            "(`/etc/modsecurity/crs/crs-setup.conf`, `/usr/share/modsecurity-crs/rules/*.conf`). "
            "The edge runs CRS v4 (what it ships); Debian packages CRS 3.3.4 — a different rule set version, "
            "both at paranoia level 1 with the anomaly threshold 5. ModSecurity also runs CRS's response phases "
            "(its response body inspection covers text/* only; the segment is video/mp4); the edge's WAF runs "
            "the request phases only.")


def scenario_defs(h1_peer: str, lat_rate: int = LAT_RATE_DEFAULT) -> list[dict]:
    h1_label = "edge-h1 (TLS)" if h1_peer == "tls" else "edge-h1 (plain)"
    defs = [
        {"id": "h1-1k", "title": "a. 1 KiB over HTTP/1.1 keep-alive", "tool": "wrk",
         "threads": 2, "conns": 64, "size": KIB, "primary": "cpu",
         "sides": [("edge", "edge_plain", "wrk"), ("nginx", "nginx_plain", "wrk")]},
        {"id": "h2-1k", "title": "b. 1 KiB over HTTP/2 over TLS", "tool": "h2load",
         "conns": 16, "streams": 32, "size": KIB, "primary": "cpu",
         "sides": [("edge", "edge_tls", "h2load"), ("nginx", "nginx_tls", "h2load")]},
        {"id": "h1-1m", "title": "c. 1 MiB over HTTP/1.1", "tool": "wrk",
         "threads": 2, "conns": 16, "size": MIB, "primary": "mib",
         "sides": [("edge", "edge_plain", "wrk"), ("nginx", "nginx_plain", "wrk")]},
        {"id": "h3-1k", "title": "d1. 1 KiB: HTTP/3 vs HTTP/1.1 on the edge (oha)", "tool": "oha",
         "conns": 16, "size": KIB, "primary": "cpu", "h3": True,
         "sides": [("edge-h3", "edge_h3", "oha-h3"),
                   (h1_label, "edge_tls" if h1_peer == "tls" else "edge_plain", "oha-h1")]},
        {"id": "h3-1m", "title": "d2. 1 MiB: HTTP/3 vs HTTP/1.1 on the edge (oha)", "tool": "oha",
         "conns": 16, "size": MIB, "primary": "mib", "h3": True,
         "sides": [("edge-h3", "edge_h3", "oha-h3"),
                   (h1_label, "edge_tls" if h1_peer == "tls" else "edge_plain", "oha-h1")]},
        # Cache hits: same load shapes as a-d2, but Host cache.bench and an object that stays
        # fresh for the whole run. Varnish sides are dropped when varnishd is not installed.
        {"id": "hit-h1-1k", "title": "e1. Cache hits, 1 KiB over HTTP/1.1 keep-alive", "tool": "wrk",
         "threads": 2, "conns": 64, "size": KIB, "primary": "cpu", "cache": True,
         "target": ("cpu_us", "edge", "nginx", "<=", 0.7, "edge/nginx CPU µs/req"),
         "sides": [("edge", "edge_plain", "wrk"), ("nginx", "nginx_plain", "wrk"),
                   ("varnish", "varnish_plain", "wrk")]},
        {"id": "hit-h2-1k", "title": "e2. Cache hits, 1 KiB over HTTP/2 over TLS", "tool": "h2load",
         "conns": 16, "streams": 32, "size": KIB, "primary": "cpu", "cache": True,
         "target": ("cpu_us", "edge", "nginx", "<=", 0.7, "edge/nginx CPU µs/req"),
         "sides": [("edge", "edge_tls", "h2load"), ("nginx", "nginx_tls", "h2load")]},
        {"id": "hit-h1-1m", "title": "e3. Cache hits, 1 MiB over HTTP/1.1", "tool": "wrk",
         "threads": 2, "conns": 16, "size": MIB, "primary": "mib", "cache": True,
         "target": ("mib_s", "edge", "nginx", ">=", 1.0, "edge/nginx MiB/s"),
         "sides": [("edge", "edge_plain", "wrk"), ("nginx", "nginx_plain", "wrk"),
                   ("varnish", "varnish_plain", "wrk")]},
        {"id": "hit-h2-1m", "title": "e6. Cache hits, 1 MiB over HTTP/2 over TLS", "tool": "h2load",
         "conns": 16, "streams": 4, "size": MIB, "primary": "mib", "cache": True,
         "target": ("mib_s", "edge", "nginx", ">=", 1.0, "edge/nginx MiB/s"),
         "sides": [("edge", "edge_tls", "h2load"), ("nginx", "nginx_tls", "h2load")]},
        {"id": "hit-h3-1k", "title": "e4. Cache hits, 1 KiB: HTTP/3 vs HTTP/1.1 on the edge (oha)", "tool": "oha",
         "conns": 16, "size": KIB, "primary": "cpu", "h3": True, "cache": True,
         "target": ("cpu_us", "edge-h3", None, "<=", 20.0, "edge h3 CPU µs per 1 KiB hit"),
         "notes": [OHA_HOST_NOTE],
         "sides": [("edge-h3", "edge_h3", "oha-h3"),
                   (h1_label, "edge_tls" if h1_peer == "tls" else "edge_plain", "oha-h1")]},
        {"id": "hit-h3-1m", "title": "e5. Cache hits, 1 MiB: HTTP/3 vs HTTP/1.1 on the edge (oha)", "tool": "oha",
         "conns": 16, "size": MIB, "primary": "mib", "h3": True, "cache": True,
         "target": ("mib_s", "edge-h3", h1_label, ">=", 0.7, "edge h3/h1 MiB/s"),
         "notes": [OHA_HOST_NOTE],
         "sides": [("edge-h3", "edge_h3", "oha-h3"),
                   (h1_label, "edge_tls" if h1_peer == "tls" else "edge_plain", "oha-h1")]},
        # Modules on the cache-hit path: the same hit through routes with 0, 1 and 4 no-op
        # modules (the standard `headers` module with no edits), one Host per route.
        {"id": "mods-h1-1k", "title": "h. Cache hits, 1 KiB over HTTP/1.1, with 0, 1 and 4 no-op Wasm modules",
         "tool": "wrk", "threads": 2, "conns": 64, "size": KIB, "primary": "cpu", "cache": True,
         "target": ("cpu_us", "edge 4 modules", "edge 0 modules", "<=+", 20.0, "edge CPU added by 4 modules per hit"),
         "sides": [("edge 0 modules", "edge_plain", "wrk", CACHE_HOST),
                   ("edge 1 module", "edge_plain", "wrk", MODS_HOSTS[1]),
                   ("edge 4 modules", "edge_plain", "wrk", MODS_HOSTS[4])]},
        # The same at a fixed request rate (oha over TLS): at saturation a slower server also
        # pays more per request for waking the load tool (fewer responses per wake-up), which
        # inflates the difference; at equal rates that cost is the same on every side.
        {"id": "mods-rate-h1-1k", "title": "h2. Cache hits at a fixed 5,000 req/s, 1 KiB over HTTP/1.1 over TLS, "
                                           "with 0, 1 and 4 no-op Wasm modules (oha)",
         "tool": "oha", "conns": 16, "rate": 5000, "size": KIB, "primary": "cpu", "cache": True,
         "notes": [OHA_HOST_NOTE],
         "target": ("cpu_us", "edge 4 modules", "edge 0 modules", "<=+", 20.0, "edge CPU added by 4 modules per hit"),
         "sides": [("edge 0 modules", "edge_tls", "oha-h1", CACHE_HOST),
                   ("edge 1 module", "edge_tls", "oha-h1", MODS_HOSTS[1]),
                   ("edge 4 modules", "edge_tls", "oha-h1", MODS_HOSTS[4])]},
        {"id": "storm", "title": f"f. Miss storm: {STORM_VIEWERS:,} concurrent requests for one new 1 MiB object",
         "kind": "storm", "tool": "storm", "size": MIB, "cache": True,
         "target": ("origin_max", "edge", None, "<=", 1, "origin fetches per new object (edge)"),
         "notes": [STORM_NOTE],
         "sides": [("edge", "edge_plain", "storm"), ("nginx", "nginx_plain", "storm")]},
        # WAF: the same cache hit (a 1 KiB media segment with a token query and a player's
        # request fields) without and with CRS on each server. Each side names its Host.
        {"id": "waf-h1-1k", "title": "i. WAF: 1 KiB segment cache hits over HTTP/1.1 keep-alive, "
                                     "CRS v4 PL1 (edge) vs nginx + ModSecurity 3 + CRS 3.3.4 PL1",
         "tool": "wrk", "threads": 2, "conns": 64, "size": KIB, "primary": "cpu", "cache": True, "waf": True,
         "path": WAF_PATH, "headers": WAF_HEADERS,
         # At ~1k req/s over 64 connections a single nginx + ModSecurity worker answers some
         # requests after more than wrk's default 2 s timeout (counted as errors, not failures).
         "wrk_timeout": "30s",
         "targets": [("cpu_us", WAF_EDGE, None, "<=", 70.0, "edge + WAF CPU µs per benign request"),
                     ("cpu_us", WAF_NGINX, WAF_EDGE, ">=", 10.0, "CPU µs/req nginx + ModSecurity / edge + WAF"),
                     ("rps", WAF_EDGE, WAF_NGINX, ">=", 10.0, "req/s edge + WAF / nginx + ModSecurity")],
         "ratios": [(WAF_EDGE, WAF_EDGE_OFF), (WAF_NGINX, WAF_EDGE), (WAF_NGINX, WAF_NGINX_OFF),
                    (WAF_EDGE_OFF, WAF_NGINX_OFF)],
         "waf_sides": [WAF_EDGE, WAF_NGINX],
         "notes": [WAF_NOTE],
         "sides": [(WAF_EDGE_OFF, "edge_plain", "wrk", CACHE_HOST),
                   (WAF_EDGE, "edge_plain", "wrk", WAF_HOST),
                   (WAF_NGINX_OFF, "nginx_plain", "wrk", CACHE_HOST),
                   (WAF_NGINX, "nginxwaf_plain", "wrk", WAF_HOST)]},
    ]
    for d in defs:
        if d.get("cache"):
            d.setdefault("host", CACHE_HOST)
            if d.get("kind") != "storm":
                d.setdefault("path", HIT_PATHS[d["size"]])
    # Fixed-rate latency: each side twice, proxied (uncached route) and as cache hits ("legs").
    lat_common = {"kind": "latency", "tool": "oha", "conns": LAT_CONNS, "rate": lat_rate, "size": KIB,
                  "legs": ["proxy", "hit"], "cache": True, "hit_host": CACHE_HOST, "hit_path": HIT_PATHS[KIB],
                  "notes": [LAT_NOTE]}
    defs += [
        {"id": "lat-h1-1k", **lat_common, "notes": list(lat_common["notes"]),
         "title": f"g1. Latency at a fixed {lat_rate:,} req/s, 1 KiB over HTTP/1.1 over TLS (oha)",
         "sides": [("edge", "edge_tls", "oha-h1"), ("nginx", "nginx_tls", "oha-h1")]},
        {"id": "lat-h2-1k", **lat_common, "notes": list(lat_common["notes"]),
         "title": f"g2. Latency at a fixed {lat_rate:,} req/s, 1 KiB over HTTP/2 over TLS (oha)",
         "sides": [("edge", "edge_tls", "oha-h2"), ("nginx", "nginx_tls", "oha-h2")]},
        {"id": "lat-h3-1k", **lat_common, "notes": list(lat_common["notes"]), "h3": True,
         "title": f"g3. Latency at a fixed {lat_rate:,} req/s, 1 KiB: HTTP/3 vs HTTP/1.1 on the edge (oha)",
         "sides": [("edge-h3", "edge_h3", "oha-h3"),
                   (h1_label, "edge_tls" if h1_peer == "tls" else "edge_plain", "oha-h1")]},
    ]
    return defs


def side_server(servers: dict[str, Server], base_key: str) -> Server:
    # "edge_plain" -> the edge, "nginx_tls" -> nginx, "varnish_plain" -> varnish
    return servers[base_key.split("_")[0]]


def prime_cache(sc: dict, sides: list, origin_url: str) -> dict:
    """Fill each server's cache with the scenario's object and check that the next request
    is a hit (X-Cache / X-Cache-Status / X-Varnish), with the Host the load tool will send.
    HTTP/2 and HTTP/3 sides are checked over HTTP/1.1 on the same TCP port number (the edge
    serves TLS and QUIC on one port; its cache key is host + path, not the protocol)."""
    path = sc["path"]
    bodies = {}
    for label, _server, url, tool in sides:
        host = tool_host_header(tool, url, sc["host"])
        statuses = []
        for attempt in range(4):
            try:
                status, headers, body = fetch_full(url, host=host, headers=sc.get("headers"))
            except (OSError, http.client.HTTPException) as e:
                raise BenchError(f"{sc['id']}: GET {url} (Host: {host}) via {label} failed: {e!r}")
            if status != 200 or len(body) != sc["size"]:
                raise BenchError(f"{sc['id']}: GET {url} (Host: {host}) via {label} gave status {status}, "
                                 f"{len(body)} bytes (want 200, {sc['size']})")
            statuses.append(cache_status(headers))
            if attempt > 0 and statuses[-1] == "HIT":
                break
            time.sleep(0.05)
        else:
            raise BenchError(f"{sc['id']}: {label} does not serve {path} (Host: {host}) from cache: "
                             f"cache status of 4 requests {statuses}; last headers {headers}")
        bodies[label] = body
        log(f"{label}: {url} (Host: {host}) cached: {' -> '.join(statuses)}")
    if len(set(bodies.values())) != 1:
        raise BenchError(f"{sc['id']}: bodies of {path} differ between {sorted(bodies)}")
    return {"object_path": path.split("?")[0]}


# --------------------------------------------------------------------------------------
# WAF checks (waf-h1-1k)


def edge_waf_counters(server: Server) -> dict[str, int]:
    """The edge's WAF counters from its admin /metrics: requests the module evaluated,
    blocked, and module failures (trap, deadline, ...) of the waf module."""
    if server.admin is None:
        raise BenchError(f"{server.name}: no admin listener to read WAF metrics from")
    url, token = server.admin
    try:
        status, _, body = fetch_full(f"{url}/metrics", headers=[("Authorization", f"Bearer {token}")])
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"GET {url}/metrics failed: {e!r}")
    if status != 200:
        raise BenchError(f"GET {url}/metrics answered {status}: {body[:200]!r}")
    text = body.decode(errors="replace")
    out = {"requests": 0, "blocked": 0, "matched": 0, "failures": 0}
    for m in re.finditer(r'^edge_module_counter_total\{module="waf",name="(\w+)"\}\s+(\d+)', text, re.M):
        if m.group(1) in out:
            out[m.group(1)] = int(m.group(2))
    for m in re.finditer(r'^edge_module_failures_total\{[^}]*module="waf"[^}]*\}\s+(\d+)', text, re.M):
        out["failures"] += int(m.group(1))
    return out


def _file_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _read_from(path: Path | None, offset: int) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _waf_log_rule_ids(server: Server, text: str) -> list[str]:
    """Rule ids in new log text: the edge's audit lines (`"rule_ids":[...]`, JSON possibly
    escaped inside the node's own log line) or ModSecurity's audit log (`[id "942100"]`)."""
    if server.audit_log is not None:
        ids = re.findall(r'\[id "(\d+)"\]', text)
    else:
        ids = [i for grp in re.findall(r'rule_ids\\?"\s*:\s*\[([\d,\s]*)\]', text)
               for i in re.findall(r"\d+", grp)]
    return sorted(set(ids), key=int)


def waf_sanity(sc: dict, sides: list, side_sc: dict) -> list[str]:
    """Before measuring: the benchmark's benign request gets 200 from every side, the same
    request with a SQL injection argument gets 403 from the WAF sides and 200 from the others.
    Also reports which rules (if any) the benign request matched below the blocking threshold."""
    waf_sides = set(sc.get("waf_sides", []))
    found = []
    for label, server, url, _tool in sides:
        host = side_sc[label]["host"]
        is_waf = label in waf_sides
        log_path = server.audit_log if server.audit_log is not None else server.errlog
        for kind, u in (("benign", url), ("attack", f"{url}&{WAF_ATTACK_QUERY}")):
            before_log = _file_size(log_path)
            before_cnt = edge_waf_counters(server) if is_waf and server.admin else None
            try:
                status, _, body = fetch_full(u, host=host, headers=sc.get("headers"))
            except (OSError, http.client.HTTPException) as e:
                raise BenchError(f"{sc['id']}: WAF sanity check: GET {u} (Host: {host}) via {label} failed: {e!r}")
            want = 403 if (is_waf and kind == "attack") else 200
            if status != want:
                raise BenchError(f"{sc['id']}: WAF sanity check: {kind} GET {u} (Host: {host}) via {label} "
                                 f"answered {status} (want {want}): {body[:300]!r}")
            if not is_waf:
                continue
            time.sleep(0.3)  # let the server write its log line
            ids = _waf_log_rule_ids(server, _read_from(log_path, before_log))
            if before_cnt is not None:
                after_cnt = edge_waf_counters(server)
                if after_cnt["requests"] - before_cnt["requests"] != 1:
                    raise BenchError(f"{sc['id']}: {label}: the WAF counted "
                                     f"{after_cnt['requests'] - before_cnt['requests']} requests for one {kind} request")
            if kind == "attack":
                if not ids:
                    raise BenchError(f"{sc['id']}: {label} answered 403 to the attack but its log "
                                     f"({log_path}) names no rule")
                found.append(f"{label}: attack `{WAF_ATTACK_QUERY}` → {status}, rules " + ", ".join(ids))
            else:
                found.append(f"{label}: benign request → {status}, "
                             + (f"**rules matched below the threshold: {', '.join(ids)}**" if ids
                                else "no rule matched (nothing logged)"))
        log(f"{label}: WAF sanity ok ({'WAF' if is_waf else 'no WAF: the attack passes with 200'})")
    for line in found:
        log("  " + line)
    return found


def run_scenario(sc: dict, servers: dict[str, Server], bases: dict[str, str], origin: Server,
                 tools: Tools, args, tmp: Path, origin_url: str = "") -> dict:
    log(f"=== {sc['title']} ===")
    path = sc.get("path") or f"/bytes/{sc['size']}"
    sides = []
    side_sc = {}  # per-side scenario: a side may name its own Host (mods-h1-1k)
    for label, base_key, tool, *host in sc["sides"]:
        sides.append((label, side_server(servers, base_key), bases[base_key] + path, tool))
        side_sc[label] = {**sc, "host": host[0]} if host else sc
    result = {"id": sc["id"], "title": sc["title"], "size": sc["size"], "primary": sc["primary"],
              "sides": [s[0] for s in sides], "runs": {s[0]: [] for s in sides}, "cmds": {},
              "h3": bool(sc.get("h3")), "cache": bool(sc.get("cache")), "notes": list(sc.get("notes", []))}
    if sc.get("waf"):
        result["waf"] = True
    if sc.get("target"):
        result["target"] = sc["target"]
    for k in ("targets", "ratios"):
        if sc.get(k):
            result[k] = sc[k]
    waf_sides = set(sc.get("waf_sides", []))
    if sc.get("waf"):
        checks = waf_sanity(sc, sides, side_sc)
        result["notes"].append("WAF sanity check before measuring: " + "; ".join(checks) + ". Sides without "
                               "WAF answered the attack with 200.")
    object_path = None
    if sc.get("cache"):
        for side in sides:
            object_path = prime_cache(side_sc[side[0]], [side], origin_url)["object_path"]
        result["object_path"] = object_path
    for label, server, url, tool in sides:
        h2_log = tmp / "h2load.log" if tool == "h2load" else None
        result["cmds"][label] = shlex.join(tool_cmd(tools, tool, url, args.duration, side_sc[label], h2_log))
        if args.warmup > 0:
            log(f"warm-up {label} {args.warmup}s")
            warm_up(tool_cmd(tools, tool, url, args.warmup, side_sc[label]), args.warmup, tmp / "warmup.txt")
    for i in range(args.runs):
        for label, server, url, tool in sides:  # strict alternation A B A B ...
            time.sleep(args.pause)
            h2_log = tmp / "h2load.log" if tool == "h2load" else None
            if h2_log is not None and h2_log.exists():
                h2_log.unlink()
            argv = tool_cmd(tools, tool, url, args.duration, side_sc[label], h2_log)
            log(f"run {i + 1}/{args.runs} {label}: {shlex.join(argv)}")
            before = origin_count(origin_url, object_path) if object_path else None
            waf0 = edge_waf_counters(server) if sc.get("waf") and server.admin else None
            r = measure(f"{sc['id']}-{re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-')}-{i + 1}", server, origin,
                        tool, argv, args.duration, tmp, h2_log)
            if waf0 is not None:
                # The edge's WAF must have evaluated every request of a WAF run (cache hits
                # included), none of the no-WAF run, and never failed (fail-open would pass
                # requests unchecked).
                waf1 = edge_waf_counters(server)
                evaluated = waf1["requests"] - waf0["requests"]
                r["waf_evaluated"] = evaluated
                r["waf_matched"] = waf1["matched"] - waf0["matched"]
                if waf1["failures"] != waf0["failures"]:
                    raise BenchError(f"{sc['id']} {label}: {waf1['failures'] - waf0['failures']} WAF module "
                                     "failures during the run")
                if label in waf_sides and evaluated < r["ok"]:
                    raise BenchError(f"{sc['id']} {label}: the WAF evaluated {evaluated} requests, fewer than "
                                     f"the {r['ok']} responses")
                if label not in waf_sides and evaluated:
                    raise BenchError(f"{sc['id']} {label}: the WAF evaluated {evaluated} requests on the no-WAF route")
                if waf1["blocked"] != waf0["blocked"]:
                    raise BenchError(f"{sc['id']} {label}: the WAF blocked {waf1['blocked'] - waf0['blocked']} "
                                     "benchmark requests")
            if object_path:
                # Every request of a hit run must come from the cache: the origin must not
                # have seen the object again (the count covers all servers; runs are serial).
                fetched = origin_count(origin_url, object_path) - before
                r["origin_fetches"] = fetched
                if fetched:
                    raise BenchError(f"{sc['id']} {label}: the origin saw {fetched} request(s) for {object_path} "
                                     f"during a cache-hit run (want 0: not every response was a hit)")
            result["runs"][label].append(r)
            log(f"  {r['rps']:.0f} req/s, {mib_s(r, sc['size']):.1f} MiB/s, "
                f"p99 {fmt(r['p99_ms'], 2)} ms, CPU {fmt(r['cpu_us_per_req'], 2)} µs/req "
                f"(server {r['server_cpu_pct']:.0f}% of a core), bad {r['bad']}")
    return result


def lat_row_label(side: str, leg: str) -> str:
    return f"{side} · {LAT_LEGS[leg]}"


def run_latency(sc: dict, servers: dict[str, Server], bases: dict[str, str], origin: Server,
                tools: Tools, args, tmp: Path, origin_url: str) -> dict:
    """Fixed-rate latency (lat-*): every side once per leg (proxied, cache hit), each a row;
    rows alternate strictly, all of them once per round."""
    log(f"=== {sc['title']} ===")
    rows = []  # (row label, leg, server, url, tool, scenario dict for tool_cmd)
    for leg in sc["legs"]:
        if leg == "hit":
            tsc = {**sc, "host": sc["hit_host"], "path": sc["hit_path"]}
        else:
            tsc = {k: v for k, v in sc.items() if k not in ("host", "path")}
        path = tsc.get("path") or f"/bytes/{sc['size']}"
        for label, base_key, tool in sc["sides"]:
            rows.append((lat_row_label(label, leg), leg, side_server(servers, base_key),
                         bases[base_key] + path, tool, tsc))
    labels = [r[0] for r in rows]
    result = {"id": sc["id"], "title": sc["title"], "kind": "latency", "size": sc["size"], "primary": "latency",
              "rate": sc["rate"], "conns": sc["conns"], "legs": list(sc["legs"]),
              "side_names": [s[0] for s in sc["sides"]], "sides": labels, "runs": {l: [] for l in labels},
              "cmds": {}, "h3": bool(sc.get("h3")), "cache": "hit" in sc["legs"], "notes": list(sc.get("notes", []))}
    object_path = None
    if "hit" in sc["legs"]:
        hit_sc = {"id": sc["id"], "host": sc["hit_host"], "path": sc["hit_path"], "size": sc["size"]}
        object_path = prime_cache(hit_sc, [(r[0], r[2], r[3], r[4]) for r in rows if r[1] == "hit"],
                                  origin_url)["object_path"]
        result["object_path"] = object_path
    oha_out = (tmp / "oha-lat.json", tmp / "oha-lat.db") if tools.oha_files else None
    if oha_out is None:
        result["notes"].append("This oha has no `-o`/`--db-url`: steady-state columns not measured.")
    for label, _leg, _server, url, tool, tsc in rows:
        result["cmds"][label] = shlex.join(tool_cmd(tools, tool, url, args.duration, tsc, oha_out=oha_out))
        if args.warmup > 0:
            log(f"warm-up {label} {args.warmup}s")
            warm_up(tool_cmd(tools, tool, url, args.warmup, tsc), args.warmup, tmp / "warmup.txt")
    for i in range(args.runs):
        for label, leg, server, url, tool, tsc in rows:
            time.sleep(args.pause)
            if oha_out is not None:
                for f in oha_out:
                    f.unlink(missing_ok=True)  # oha appends to an existing database
            argv = tool_cmd(tools, tool, url, args.duration, tsc, oha_out=oha_out)
            log(f"run {i + 1}/{args.runs} {label}: {shlex.join(argv)}")
            before = origin_count(origin_url, object_path) if leg == "hit" else None
            tag = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
            r = measure(f"{sc['id']}-{tag}-{i + 1}", server, origin, tool, argv, args.duration, tmp,
                        all_percentiles=True, oha_out=oha_out)
            r["target_rps"] = sc["rate"]
            if leg == "hit":
                fetched = origin_count(origin_url, object_path) - before
                r["origin_fetches"] = fetched
                if fetched:
                    raise BenchError(f"{sc['id']} {label}: the origin saw {fetched} request(s) for {object_path} "
                                     f"during a cache-hit run (want 0: not every response was a hit)")
            result["runs"][label].append(r)
            lat = r.get("lat_ms") or {}
            steady = r.get("lat_steady_ms") or {}
            log(f"  {r['rps']:.0f} req/s (target {sc['rate']}), p50/p90/p99/p99.9 "
                + "/".join(fmt(lat.get(k), 2) for k, _ in LAT_PERCENTILES)
                + " ms (steady p99/p99.9 " + "/".join(fmt(steady.get(k), 2) for k, _ in LAT_STEADY)
                + f" ms), CPU {fmt(r['cpu_us_per_req'], 2)} µs/req (server {r['server_cpu_pct']:.0f}% of a core), "
                f"bad {r['bad']}")
    return result


# --------------------------------------------------------------------------------------
# Miss storm: N viewers ask for one object nobody has yet, all at once.


def storm_requests(url: str, host: str, n: int, size: int, timeout: float = 60.0) -> dict:
    """Open `n` connections, wait until every one is established, then write one GET on each
    (Connection: close) in a tight loop, and read all responses concurrently. Returns timings
    (ms since the first request was written), status and cache-status tallies, and failures."""
    _scheme, addr, port, path = split_url(url)
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-bench-storm\r\n"
           "Accept: */*\r\nConnection: close\r\n\r\n").encode()
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        t_start = time.monotonic()
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = s.connect_ex((addr, port))
            if err not in (0, errno.EINPROGRESS):
                raise BenchError(f"storm: connect #{len(socks)} to {addr}:{port} failed: {os.strerror(err)}")
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_WRITE, i)
        pending = n
        deadline = time.monotonic() + timeout
        while pending:
            events = sel.select(timeout=max(0.0, deadline - time.monotonic()))
            if not events and time.monotonic() >= deadline:
                raise BenchError(f"storm: only {n - pending} of {n} connections established in {timeout:.0f} s")
            for key, _ in events:
                err = socks[key.data].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise BenchError(f"storm: connection #{key.data + 1} failed: {os.strerror(err)}")
                sel.unregister(socks[key.data])
                pending -= 1
        t_connected = time.monotonic()
        t_send0 = time.monotonic()
        for i, s in enumerate(socks):
            try:
                sent = s.send(req)
            except OSError as e:
                raise BenchError(f"storm: writing request #{i + 1} failed: {e!r} (did the server close it?)")
            if sent != len(req):
                raise BenchError(f"storm: short write on connection #{i + 1}")
        t_send1 = time.monotonic()
        state = [{"head": bytearray(), "hdrs": None, "status": None, "body": 0, "first": None,
                  "done": None, "error": None} for _ in socks]
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        open_n = n
        deadline = time.monotonic() + timeout
        while open_n:
            events = sel.select(timeout=max(0.0, deadline - time.monotonic()))
            if not events and time.monotonic() >= deadline:
                raise BenchError(f"storm: {open_n} of {n} responses not complete after {timeout:.0f} s")
            for key, _ in events:
                i, s, st = key.data, socks[key.data], state[key.data]
                try:
                    k = s.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    st["error"] = repr(e)
                    k = 0
                now = time.monotonic()
                if k and st["first"] is None:
                    st["first"] = now
                if k == 0:
                    st["done"] = now
                    sel.unregister(s)
                    open_n -= 1
                    continue
                if st["hdrs"] is not None:
                    st["body"] += k
                    continue
                st["head"] += view[:k]
                j = st["head"].find(b"\r\n\r\n")
                if j < 0:
                    if len(st["head"]) > 64 * 1024:
                        st["error"] = "response head over 64 KiB"
                    continue
                lines = bytes(st["head"][:j]).decode("latin-1").split("\r\n")
                m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
                st["status"] = int(m.group(1)) if m else None
                st["hdrs"] = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                              for l in lines[1:] if ":" in l}
                st["body"] = len(st["head"]) - j - 4
                st["head"] = None
    finally:
        sel.close()
        for s in socks:
            s.close()

    statuses: collections.Counter = collections.Counter()
    caches: collections.Counter = collections.Counter()
    failures = []
    for i, st in enumerate(state):
        statuses[st["status"] or "none"] += 1
        hdrs = st["hdrs"] or {}
        caches[cache_status(hdrs) if hdrs else "none"] += 1
        if st["status"] != 200 or st["error"] is not None:
            complete = False
        elif "content-length" in hdrs:
            complete = st["body"] == int(hdrs["content-length"]) == size
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            complete = st["body"] >= size  # counted with the chunk framing
        else:
            complete = st["body"] == size  # delimited by the close
        if not complete and len(failures) < 5:
            failures.append(f"#{i + 1}: status {st['status']}, {st['body']} body bytes, "
                            f"content-length {hdrs.get('content-length')}, error {st['error']}")
        st["complete"] = complete
    firsts = sorted((st["first"] - t_send0) * 1e3 for st in state if st["first"] is not None)
    dones = [(st["done"] - t_send0) * 1e3 for st in state if st["done"] is not None]
    return {
        "n": n,
        "ok": sum(1 for st in state if st["complete"]),
        "statuses": dict(statuses),
        "cache": dict(caches),
        "failures": failures,
        "connect_ms": (t_connected - t_start) * 1e3,
        "send_spread_ms": (t_send1 - t_send0) * 1e3,
        "first_byte_ms": (firsts[0], percentile(firsts, 50), firsts[-1]) if firsts else None,
        "last_done_ms": max(dones) if dones else None,
    }


def run_storm(sc: dict, servers: dict[str, Server], bases: dict[str, str], origin: Server,
              args, tmp: Path, origin_url: str) -> dict:
    log(f"=== {sc['title']} ===")
    result = {"id": sc["id"], "title": sc["title"], "kind": "storm", "size": sc["size"], "cache": True,
              "sides": [s[0] for s in sc["sides"]], "runs": {s[0]: [] for s in sc["sides"]},
              "target": sc.get("target"), "notes": list(sc.get("notes", [])), "cmds": {}}
    tag = f"{os.getpid()}-{int(time.time())}"
    for i in range(args.runs):
        for label, base_key, _tool in sc["sides"]:  # alternate, a fresh object every time
            server = side_server(servers, base_key)
            server.check_alive()
            name = f"storm-{label.split()[0]}-{tag}-{i + 1}"
            obj = f"/object/{name}"
            url = f"{bases[base_key]}{obj}?{STORM_QUERY}"
            result["cmds"][label] = (f"{STORM_VIEWERS} connections (run.py storm_requests), then one "
                                     f"`GET {obj}?{STORM_QUERY}` with `Host: {sc['host']}` on each")
            if origin_count(origin_url, obj):
                raise BenchError(f"storm: {obj} is not new: the origin already saw it")
            time.sleep(args.pause)
            log(f"storm {i + 1}/{args.runs} {label}: {STORM_VIEWERS} concurrent GET {url} (Host: {sc['host']})")
            cpu0 = server.cpu_ticks()
            r = storm_requests(url, sc["host"], STORM_VIEWERS, sc["size"])
            cpu1 = server.cpu_ticks()
            server.check_alive()
            r["origin_requests"] = origin_count(origin_url, obj)
            r["object"] = obj
            r["server_cpu_ms"] = 1e3 * (cpu1 - cpu0) / CLK_TCK
            result["runs"][label].append(r)
            fb = r["first_byte_ms"]
            log(f"  origin saw {r['origin_requests']} request(s); {r['ok']}/{r['n']} complete 200s; "
                f"cache status {r['cache']}; connect {r['connect_ms']:.0f} ms, requests written in "
                f"{r['send_spread_ms']:.1f} ms, first byte {fb[0]:.0f}/{fb[1]:.0f}/{fb[2]:.0f} ms "
                f"(min/median/max), last done {r['last_done_ms']:.0f} ms" if fb else
                f"  origin saw {r['origin_requests']} request(s); {r['ok']}/{r['n']} complete 200s")
            if r["ok"] != r["n"]:
                raise BenchError(f"storm via {label}: {r['n'] - r['ok']} of {r['n']} responses failed or were "
                                 f"incomplete; statuses {r['statuses']}; first failures:\n" + "\n".join(r["failures"]))
            if r["send_spread_ms"] >= STORM_DELAY_MS:
                raise BenchError(f"storm via {label}: writing {r['n']} requests took {r['send_spread_ms']:.0f} ms, "
                                 f"not within the origin's {STORM_DELAY_MS} ms delay: not a simultaneous storm")
    return result


# --------------------------------------------------------------------------------------
# Report


def mib_s(r: dict, size: int) -> float:
    return r["ok"] * size / MIB / r["duration_s"]


def fmt(v, digits=1) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def summarize(runs: list[dict], size: int) -> dict:
    return {
        "rps": med([r["rps"] for r in runs]),
        "mib_s": med([mib_s(r, size) for r in runs]),
        "p50_ms": med([r["p50_ms"] for r in runs]),
        "p99_ms": med([r["p99_ms"] for r in runs]),
        "cpu_us": med([r["cpu_us_per_req"] for r in runs]),
        "origin_cpu_us": med([r["origin_cpu_us_per_req"] for r in runs]),
        "cpu_pct": med([r["server_cpu_pct"] for r in runs]),
        "rss_mib": max((r["peak_rss_kib"] or 0) for r in runs) / 1024 if runs else None,
        "bad": sum(r["bad"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
    }


def scenario_table(res: dict) -> list[str]:
    # One row per server, then one ratio row of the first server against each other one.
    summ = {side: summarize(res["runs"][side], res["size"]) for side in res["sides"]}
    res["medians"] = summ
    mib_first = res["primary"] == "mib"
    cols = [("rps", "req/s", 0), ("mib_s", "MiB/s", 1), ("p50_ms", "p50 ms", 2), ("p99_ms", "p99 ms", 2),
            ("cpu_us", "CPU µs/req", 2), ("origin_cpu_us", "origin CPU µs/req", 2),
            ("cpu_pct", "server CPU %", 0), ("rss_mib", "peak RSS MiB", 1), ("bad", "non-2xx+errors", 0)]
    if mib_first:
        cols[0], cols[1] = cols[1], cols[0]
    primary_key = "mib_s" if mib_first else "cpu_us"
    head = ["server"] + [f"**{h}**" if k == primary_key else h for k, h, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in res["sides"]:
        lines.append("| " + " | ".join([name] + [fmt(summ[name][k], d) for k, _, d in cols]) + " |")
    ratio_keys = {"rps", "mib_s", "p50_ms", "p99_ms", "cpu_us", "rss_mib"}
    # Ratio rows: the scenario's own pairs (waf-h1-1k), else the first server against each other one.
    pairs = [(a, b) for a, b in res.get("ratios") or [] if a in summ and b in summ] or \
        [(res["sides"][0], b) for b in res["sides"][1:]]
    for a, b in pairs:
        sa, sb = summ[a], summ[b]
        cells = [f"**{a} / {b}**"]
        for k, _, _ in cols:
            cells.append(fmt(ratio(sa[k], sb[k]), 2) + "×" if k in ratio_keys and ratio(sa[k], sb[k]) is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summarize_latency(runs: list[dict]) -> dict:
    d = {
        "rps": med([r["rps"] for r in runs]),
        "rate_share": med([r["rps"] / r["target_rps"] for r in runs if r.get("target_rps")]),
        "cpu_us": med([r["cpu_us_per_req"] for r in runs]),
        "origin_cpu_us": med([r["origin_cpu_us_per_req"] for r in runs]),
        "cpu_pct": med([r["server_cpu_pct"] for r in runs]),
        "bad": sum(r["bad"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
    }
    for k, _ in LAT_PERCENTILES:
        d[k] = med([(r.get("lat_ms") or {}).get(k) for r in runs])
    for k, _ in LAT_STEADY:
        d["steady_" + k] = med([(r.get("lat_steady_ms") or {}).get(k) for r in runs])
    return d


def latency_table(res: dict) -> list[str]:
    """lat-*: one row per server and leg, then per leg the first server against each other one."""
    summ = {row: summarize_latency(res["runs"][row]) for row in res["sides"]}
    res["medians"] = summ
    cols = ([("rps", "achieved req/s", 0)] + [(k, h, 2) for k, h in LAT_PERCENTILES]
            + [("steady_" + k, f"**{h}**" if k == "p99" else h, 2) for k, h in LAT_STEADY]
            + [("cpu_us", "CPU µs/req", 2), ("origin_cpu_us", "origin CPU µs/req", 2),
               ("cpu_pct", "server CPU %", 0), ("bad", "non-2xx+errors", 0)])
    lines = ["| server · route | " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    low = []
    for row in res["sides"]:
        cells = [row]
        for k, _, d in cols:
            cell = fmt(summ[row][k], d)
            if k == "rps" and summ[row]["rate_share"] is not None and summ[row]["rate_share"] < LAT_MIN_RATE_SHARE:
                cell += " ⚠"
                low.append(row)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    ratio_keys = {"rps", "cpu_us"} | {k for k, _ in LAT_PERCENTILES} | {"steady_" + k for k, _ in LAT_STEADY}
    names = res["side_names"]
    for leg in res["legs"]:
        a = lat_row_label(names[0], leg)
        for other in names[1:]:
            b = lat_row_label(other, leg)
            cells = [f"**{names[0]} / {other}, {LAT_LEGS[leg]}**"]
            for k, _, _ in cols:
                v = ratio(summ[a][k], summ[b][k]) if k in ratio_keys else None
                cells.append(fmt(v, 2) + "×" if v is not None else "")
            lines.append("| " + " | ".join(cells) + " |")
    res["_low_rate"] = low
    return lines


def lat_runs_table(res: dict) -> list[str]:
    lines = ["| run | server · route | 2xx | s | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | steady p99 ms | "
             "steady p99.9 ms | steady responses | CPU µs/req | origin µs/req | CPU % | bad | aborted at deadline | load1 |",
             "|" + "---|" * 18]
    n = max(len(v) for v in res["runs"].values())
    for i in range(n):
        for row in res["sides"]:
            if i >= len(res["runs"][row]):
                continue
            r = res["runs"][row][i]
            lat, steady = r.get("lat_ms") or {}, r.get("lat_steady_ms") or {}
            lines.append("| " + " | ".join(
                [str(i + 1), row, str(r["ok"]), fmt(r["duration_s"], 2), fmt(r["rps"], 0)]
                + [fmt(lat.get(k), 2) for k, _ in LAT_PERCENTILES]
                + [fmt(steady.get(k), 2) for k, _ in LAT_STEADY]
                + [str(r["info"].get("steady_rows", "n/a")), fmt(r["cpu_us_per_req"], 2), fmt(r["origin_cpu_us_per_req"], 2), fmt(r["server_cpu_pct"], 0),
                   str(r["bad"]), str(r["info"].get("aborted_at_deadline", 0)), fmt(r["load1_before"], 2)]) + " |")
    return lines


def target_checks(res: dict) -> list[dict]:
    """The issue's targets for a scenario (`target`, or a list in `targets`)."""
    ts = ([res["target"]] if res.get("target") else []) + list(res.get("targets") or [])
    return [c for c in (target_check(res, t) for t in ts) if c]


def target_check(res: dict, t: tuple | None = None) -> dict | None:
    """The issue's target for a scenario, against the medians (or the storm's worst run)."""
    t = t or res.get("target")
    if not t:
        return None
    key, a, b, op, limit, what = t
    if res.get("kind") == "storm":
        counts = [r["origin_requests"] for r in res["runs"].get(a, [])]
        value = max(counts) if counts else None
        shown = ", ".join(str(c) for c in counts) + " (per run)" if counts else "n/a"
        for other in res["sides"]:
            if other != a and res["runs"].get(other):
                shown += f"; {other}: " + ", ".join(str(r["origin_requests"]) for r in res["runs"][other])
    else:
        med_ = res.get("medians") or {}
        if a not in med_ or (b is not None and b not in med_):
            return None
        if op == "<=+":
            # An added cost: side a minus side b, in µs.
            va, vb = med_[a][key], med_[b][key]
            value = None if va is None or vb is None else va - vb
            shown = f"+{fmt(value, 2)} µs" if value is not None else "n/a"
        else:
            value = med_[a][key] if b is None else ratio(med_[a][key], med_[b][key])
            shown = (f"{fmt(value, 2)} µs" if b is None else f"{fmt(value, 2)}×") if value is not None else "n/a"
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    unit = "" if res.get("kind") == "storm" else (" µs" if b is None or op == "<=+" else "×")
    return {"what": what, "target": f"{op.replace('<=+', '≤ +').replace('<=', '≤').replace('>=', '≥')} {limit:g}{unit}",
            "value": value, "shown": shown, "met": met}


def storm_table(res: dict) -> list[str]:
    lines = ["| run | server | object | **origin requests** | complete 2xx | cache status of the responses | "
             "connect all ms | requests written in ms | first byte ms min / median / max | last done ms | server CPU ms |",
             "|" + "---|" * 11]
    n = max(len(v) for v in res["runs"].values()) if res["runs"] else 0
    for i in range(n):
        for side in res["sides"]:
            if i >= len(res["runs"][side]):
                continue
            r = res["runs"][side][i]
            fb = r["first_byte_ms"]
            lines.append("| " + " | ".join([
                str(i + 1), side, f"`{r['object']}`", f"**{r['origin_requests']}**", f"{r['ok']} / {r['n']}",
                ", ".join(f"{k} {v}" for k, v in sorted(r["cache"].items(), key=lambda kv: -kv[1])),
                fmt(r["connect_ms"], 0), fmt(r["send_spread_ms"], 1),
                " / ".join(fmt(x, 0) for x in fb) if fb else "n/a", fmt(r["last_done_ms"], 0),
                fmt(r["server_cpu_ms"], 0)]) + " |")
    return lines


def runs_table(res: dict) -> list[str]:
    lines = ["| run | server | 2xx | s | req/s | MiB/s | p50 ms | p99 ms | CPU µs/req | origin µs/req | CPU % | VmHWM MiB | bad | load1 |",
             "|" + "---|" * 14]
    n = max(len(v) for v in res["runs"].values())
    for i in range(n):
        for side in res["sides"]:
            if i >= len(res["runs"][side]):
                continue
            r = res["runs"][side][i]
            lines.append("| " + " | ".join([
                str(i + 1), side, str(r["ok"]), fmt(r["duration_s"], 2), fmt(r["rps"], 0),
                fmt(mib_s(r, res["size"]), 1), fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2),
                fmt(r["cpu_us_per_req"], 2), fmt(r["origin_cpu_us_per_req"], 2),
                fmt(r["server_cpu_pct"], 0), fmt((r["peak_rss_kib"] or 0) / 1024, 1), str(r["bad"]),
                fmt(r["load1_before"], 2)]) + " |")
    return lines


def cache_setup_lines(meta: dict, varnish_missing: bool, no_edge: bool) -> list[str]:
    fs = meta.get("nginx_cache_fs", "unknown")
    where = ("tmpfs under /dev/shm, linked from the run's nginx prefix as `cache`" if fs == "tmpfs" else
             f"{fs} (no writable tmpfs at /dev/shm): the run's nginx prefix `cache`")
    lines = [
        f"Cache scenarios (hit-*, storm) ask for the virtual host `{CACHE_HOST}`: wrk `-H 'Host: {CACHE_HOST}'`; "
        f"h2load `-H ':authority: {CACHE_HOST}'` (with `-H 'host: ...'` h2load keeps the URL's :authority and adds "
        "a host field, which the edge routes by :authority and nginx rejects with 400); oha a "
        f"`https://{CACHE_HOST}:PORT/...` URL with `--connect-to {CACHE_HOST}:PORT:127.0.0.1:PORT` "
        "(it cannot override the authority over HTTP/3), so :authority/Host is `cache.bench:PORT` and SNI "
        "`cache.bench` (answered with the edge's only certificate; `--insecure`).",
        f"Edge: an exact-host route `{CACHE_HOST}` with `[routes.cache] enabled = true` in front of the uncached "
        "`*` route the proxy scenarios use; `[cache] max_bytes = 536870912, max_object_bytes = 16777216, "
        "shards = 16` (in memory); `max_connections_per_ip = 4096` for the storm.",
        f"nginx: a `server_name {CACHE_HOST}` server on the same two ports with `proxy_cache` "
        "(`proxy_cache_path ... keys_zone=bench:32m use_temp_path=off`, `proxy_cache_valid 200 10m`, "
        f"`proxy_cache_lock on`, `open_file_cache max=1000`), cache directory on {where}. nginx caches in files: "
        "on tmpfs (or via the page cache) hits are served from memory, but through open/read/sendfile of a "
        "cache file rather than from an in-process store; the cache manager process counts in its CPU.",
        "Hit objects: `" + "`, `".join(HIT_PATHS.values()) + "` (max-age=3600: fresh for the whole run), "
        "filled and checked as hits on every server before the warm-up; the origin's per-object request "
        "count must not move during a measured run.",
    ]
    if meta.get("varnish_cmd"):
        lines.append(f"Varnish (hit-h1-1k, hit-h1-1m; no TLS): `{meta['varnish_cmd']}` with the built-in VCL. "
                     "One thread pool, but Varnish runs a worker thread per request in progress (100 threads at "
                     "least), so it is not single-threaded like the other two: its CPU µs/req (manager + cache "
                     "process, all threads) compares, its req/s and CPU % may use both cores.")
    elif varnish_missing:
        lines.append("Varnish: not run (see the notes of hit-h1-1k / hit-h1-1m).")
    if no_edge:
        lines.append("`--no-edge`: the edge sides are nginx's cache.bench server.")
    return lines


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "no commit") + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def build_report(meta: dict, results: list[dict], failure: str | None) -> str:
    L = []
    L.append(f"# Edge benchmark — {meta['date']}")
    L.append("")
    if failure:
        L.append(f"> **FAILED**: {failure.splitlines()[0]}")
        L.append("")
    if meta.get("quick"):
        L.append("> `--quick` smoke run (1 run of 3 s per side): checks the harness, not for conclusions.")
        L.append("")
    if meta.get("self_test"):
        L.append(f"> **Harness self-test** ({meta['self_test']}): not a real edge measurement.")
        L.append("")
    for note in meta.get("skipped", []):
        L.append(f"> {note}")
        L.append("")
    L.append(f"- Command: `{meta['command']}`")
    L.append(f"- Host: {meta['nproc']} CPUs (nproc), {meta['cpu_model']}, kernel {meta['kernel']}")
    la = meta["load_before"]
    warn = f" — **above {meta['max_load']}: numbers may be disturbed, rerun**" if la[0] > meta["max_load"] else ""
    L.append(f"- Load average before start (1/5/15 min): {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}{warn}")
    L.append(f"- Project: {meta['git']}")
    L.append("- Tools: " + ", ".join(f"{k}: `{v}`" for k, v in meta["versions"].items()))
    L.append(f"- Method: {meta['runs']} run(s) × {meta['duration']} s per server per scenario after a "
             f"{meta['warmup']} s warm-up each, strictly alternating A/B/A/B; tables show medians. "
             "CPU µs/req = (utime+stime of the server process over the run, from /proc/PID/stat; "
             "nginx: master + worker (+ cache manager/loader); Varnish: manager + cache process; any child processes of the edge count too) ÷ 2xx responses. `origin CPU µs/req` is the origin process over "
             "the same window (≈0 when the edge serves from cache). `server CPU %` is of one core. "
             "Latency is at saturation (closed-loop tools), not at a fixed rate. MiB/s = 2xx × body size "
             "÷ duration. Peak RSS is VmHWM since process start (nginx: largest of master/worker).")
    L.append("- One server worker each: edge `workers = 1`, access log off, log level warn; nginx `worker_processes 1`, "
             "plain `proxy_pass` (no cache) with upstream `keepalive 64`, `keepalive_requests 1000000`, "
             "`proxy_max_temp_file_size 0`, access log off. Same origin process for both.")
    if meta.get("cache_setup"):
        for line in meta["cache_setup"]:
            L.append(f"- {line}")
    if meta.get("edge_waf_route"):
        L.append("- WAF (waf-h1-1k), edge route: `" + meta["edge_waf_route"].replace("\n", "` · `") + "`")
    if meta.get("modsec_rules"):
        L.append("- WAF (waf-h1-1k), nginx + ModSecurity `modsecurity_rules_file`: `"
                 + meta["modsec_rules"].replace("\n", "` · `") + "` (see bench/nginx-modsec.conf.tmpl)")
    if meta.get("tls_info"):
        L.append("- TLS as negotiated by h2load: " + "; ".join(f"{k}: {v}" for k, v in meta["tls_info"].items()))
    lat_res = [r for r in results if r.get("kind") == "latency"]
    if lat_res:
        L.append(f"- Fixed-rate latency ({', '.join(r['id'] for r in lat_res)}): unlike the rest, open loop at "
                 f"{lat_res[0]['rate']:,} req/s with `oha -q {lat_res[0]['rate']} --latency-correction`, "
                 f"{lat_res[0]['conns']} connections, same client for every row; p50/p90/p99/p99.9 from oha's "
                 "`latencyPercentiles` (whole run), steady p99/p99.9 without the requests due in the first "
                 f"{LAT_SETTLE_S:g} s (connection set-up); achieved req/s = 2xx ÷ duration; CPU sampled over launch … launch + "
                 "duration as for the other oha scenarios.")
    L.append("")
    checks = []
    for res in results:
        if res.get("kind") == "latency":
            res["_table"] = latency_table(res)  # also fills res["medians"]
        elif res.get("kind") != "storm":
            res["_table"] = scenario_table(res)  # also fills res["medians"]
        for c in target_checks(res):
            checks.append((res, c))
    if checks:
        L.append("## Targets" if any(res.get("targets") for res, _ in checks) else "## Cache targets")
        L.append("")
        L.append("| scenario | measure | target | measured | met |")
        L.append("|---|---|---|---|---|")
        for res, c in checks:
            met = "n/a" if c["met"] is None else ("**yes**" if c["met"] else "**no**")
            L.append(f"| {res['id']} | {c['what']} | {c['target']} | {c['shown']} | {met} |")
        L.append("")
    for res in results:
        L.append(f"## {res['title']}")
        L.append("")
        if res.get("kind") == "storm":
            L.extend(storm_table(res))
            L.append("")
            for note in res.get("notes", []):
                L.append(note)
                L.append("")
            L.append("How: " + next(iter(res["cmds"].values()), ""))
            L.append("")
            continue
        L.extend(res.pop("_table"))
        L.append("")
        if res.get("kind") == "latency":
            low = res.pop("_low_rate", [])
            L.append(f"Target: {res['rate']:,} req/s over {res['conns']} connections for every row. "
                     + (f"⚠ below {LAT_MIN_RATE_SHARE:.0%} of it (median): {', '.join(low)} — that row did "
                        "not run at the set rate (client or server saturated, or errors): its latency is not "
                        "a below-saturation figure." if low else
                        f"Every row reached ≥ {LAT_MIN_RATE_SHARE:.0%} of it (median)."))
            L.append("")
        for note in res.get("notes", []):
            L.append(note)
            L.append("")
        if res.get("waf"):
            ev = {side: [r.get("waf_evaluated") for r in runs if r.get("waf_evaluated") is not None]
                  for side, runs in res["runs"].items()}
            ev = {k: v for k, v in ev.items() if v}
            mt = sum(r.get("waf_matched") or 0 for runs in res["runs"].values() for r in runs)
            if ev or any(side.startswith("edge") for side in res["sides"]):
                L.append("Edge WAF counters over the measured runs (admin `/metrics`, "
                         "`edge_module_counter_total{module=\"waf\"}`): requests evaluated per run — "
                         + "; ".join(f"{side}: {', '.join(str(x) for x in v)}" for side, v in ev.items())
                         + f" (each ≥ the run's 2xx on the WAF side, 0 on the no-WAF side); "
                         f"requests that matched a logging rule: {mt}; blocked: 0; module failures: 0 "
                         "(checked per run; anything else fails the benchmark).")
                L.append("")
        if res.get("object_path"):
            fetched = [r.get("origin_fetches", 0) for runs in res["runs"].values() for r in runs]
            L.append(f"All hits: before the runs every server answered a repeat request for `{res['object_path']}` "
                     f"as a cache hit, and the origin saw {sum(fetched)} request(s) for it during the measured "
                     f"runs (checked per run; any would fail the benchmark).")
            L.append("")
        if res.get("h3") or res["id"].startswith("h3"):
            L.append("HTTP/3 req/s = 2xx responses ÷ the `-z` duration (oha's own figure includes its "
                     "~30 s QUIC idle wait); CPU is sampled over launch … launch + duration. Both sides "
                     "use the same client (oha, same `-c`).")
            L.append("")
        L.append("Commands:")
        L.append("")
        for side, cmd in res["cmds"].items():
            L.append(f"- {side}: `{cmd}`")
        L.append("")
        L.append("<details><summary>all runs</summary>")
        L.append("")
        L.extend(lat_runs_table(res) if res.get("kind") == "latency" else runs_table(res))
        L.append("")
        L.append("</details>")
        L.append("")
    if failure:
        L.append("## Failure")
        L.append("")
        L.append("```")
        L.append(failure)
        L.append("```")
        L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------------------
# Main


def make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
           "-keyout", str(key), "-out", str(cert)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"openssl failed: {r.stderr}")
    return cert, key


def wait_for_load(max_load: float, max_wait: float) -> None:
    t_end = time.monotonic() + max_wait
    la = loadavg()[0]
    if la <= max_load or max_wait <= 0:
        return
    log(f"1-min load average {la:.2f} > {max_load}; waiting up to {max_wait:.0f} s for it to settle")
    while time.monotonic() < t_end:
        time.sleep(5)
        la = loadavg()[0]
        if la <= max_load:
            log(f"load average now {la:.2f}")
            return
    log(f"load average still {la:.2f}; going on (the report flags it)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 run of 3 s, 1 s warm-up")
    ap.add_argument("--runs", type=int, help="runs per server per scenario (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per run (default 10)")
    ap.add_argument("--warmup", type=int, help="warm-up seconds per server per scenario (default 2)")
    ap.add_argument("--only", help="comma-separated scenario ids: h1-1k,h2-1k,h1-1m,h3-1k,h3-1m,"
                                   "hit-h1-1k,hit-h2-1k,hit-h1-1m,hit-h3-1k,hit-h3-1m,storm,mods-h1-1k,mods-rate-h1-1k,waf-h1-1k,"
                                   "lat-h1-1k,lat-h2-1k,lat-h3-1k")
    ap.add_argument("--no-h3", action="store_true", help="skip the HTTP/3 scenarios (no oha needed)")
    ap.add_argument("--no-varnish", action="store_true", help="leave Varnish out of the cache-hit scenarios")
    ap.add_argument("--h1-peer", choices=("tls", "plain"), default="tls",
                    help="HTTP/1.1 side of the HTTP/3 comparison: over TLS (default) or plaintext")
    ap.add_argument("--lat-rate", type=int, default=LAT_RATE_DEFAULT,
                    help=f"request rate of the fixed-rate latency scenarios lat-* (req/s, default {LAT_RATE_DEFAULT})")
    ap.add_argument("--max-load", type=float, default=1.5, help="1-min load average considered quiet")
    ap.add_argument("--load-wait", type=float, help="seconds to wait for a quiet machine (default 120, quick 0)")
    ap.add_argument("--no-edge", action="store_true", help="harness self-test: nginx only")
    ap.add_argument("--fake-origin", action="store_true", help="harness self-test: static nginx as origin")
    ap.add_argument("--keep-tmp", action="store_true", help="keep bench/results/tmp* (logs, configs)")
    args = ap.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.load_wait = args.load_wait if args.load_wait is not None else (0 if args.quick else 120)
    args.pause = 0.5 if args.quick else 1.0
    if args.lat_rate <= 0:
        ap.error("--lat-rate must be a positive number of requests per second")

    defs = scenario_defs(args.h1_peer, args.lat_rate)
    wanted = set()
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {d["id"] for d in defs}
        if unknown:
            ap.error(f"unknown scenario(s): {sorted(unknown)}")
        defs = [d for d in defs if d["id"] in wanted]
    if args.no_h3 or args.no_edge:
        defs = [d for d in defs if not d.get("h3")]
    skipped_notes = []
    if args.fake_origin:
        # lat-*: keep the proxied rows (/bytes/1024), drop the cache-hit rows (need /object).
        for d in defs:
            if d.get("kind") == "latency" and "hit" in d["legs"]:
                d["legs"] = [leg for leg in d["legs"] if leg != "hit"]
                d["cache"] = False
                d["notes"].append("Cache-hit rows left out: --fake-origin has no /object endpoint.")
    if args.fake_origin and any(d.get("cache") for d in defs):
        skipped_notes.append("Cache scenarios skipped: --fake-origin has no /object and /counts endpoints.")
        defs = [d for d in defs if not d.get("cache")]
    if args.no_edge and any(d.get("waf") for d in defs):
        skipped_notes.append("waf-h1-1k skipped: --no-edge (the scenario measures the edge's WAF).")
        defs = [d for d in defs if not d.get("waf")]
    # The nginx + ModSecurity peer of waf-h1-1k: Debian packages (bench/run.sh installs them).
    want_modsec = any(b.startswith("nginxwaf") for d in defs for _, b, *_ in d["sides"])
    if want_modsec and modsec_missing():
        note = (f"nginx + ModSecurity left out: {', '.join(modsec_missing())} not installed "
                "(`apt-get install -y libnginx-mod-http-modsecurity modsecurity-crs`; bench/run.sh does this).")
        for d in defs:
            if any(b.startswith("nginxwaf") for _, b, *_ in d["sides"]):
                d["sides"] = [side for side in d["sides"] if not side[1].startswith("nginxwaf")]
                d.setdefault("notes", []).append(note)
        want_modsec = False
    want_waf = any(d.get("waf") for d in defs)
    # Varnish: an extra peer where a scenario lists it, if varnishd is installed.
    want_varnish = any(b.startswith("varnish") for d in defs for _, b, *_ in d["sides"])
    varnish_note = None
    if want_varnish and (args.no_varnish or not varnishd_binary()):
        varnish_note = ("Varnish left out (--no-varnish)." if args.no_varnish else
                        "Varnish left out: varnishd is not installed (`apt-get install -y varnish`; "
                        "bench/run.sh tries this).")
        for d in defs:
            if any(b.startswith("varnish") for _, b, *_ in d["sides"]):
                d["sides"] = [side for side in d["sides"] if not side[1].startswith("varnish")]
                d.setdefault("notes", []).append(varnish_note)
        want_varnish = False
    # The storm opens 1,000 client sockets here, and nginx/the edge accept as many: lift the
    # soft open-files limit to the hard one (children inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    if any(d.get("kind") == "storm" for d in defs):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile != resource.RLIM_INFINITY and nofile < 2 * STORM_VIEWERS + 256:
            raise SystemExit(f"bench: the storm needs ~{2 * STORM_VIEWERS + 256} open files; "
                             f"RLIMIT_NOFILE is {nofile} (raise it with ulimit -n)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp", dir=RESULTS))
    os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user when started by root
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python3", "bench/run.py", *sys.argv[1:]])
    tools = Tools()
    if not tools.oha:
        # The lat-* scenarios need oha for every row; left out of a default run without it
        # (e.g. `bench/run.sh --no-h3`, which does not build oha). Named in --only: an error below.
        lat_skip = [d["id"] for d in defs if d.get("kind") == "latency" and d["id"] not in wanted]
        if lat_skip:
            skipped_notes.append(f"{', '.join(lat_skip)} skipped: oha not found (cargo install oha --locked "
                                 "--features http3 --root bench/.tools; bench/run.sh does this).")
            defs = [d for d in defs if d["id"] not in lat_skip]

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "git": git_rev(),
        "versions": tools.versions(),
        "runs": args.runs, "duration": args.duration, "warmup": args.warmup,
        "max_load": args.max_load,
        "quick": args.quick,
        "self_test": ", ".join(x for x, on in (("--no-edge", args.no_edge), ("--fake-origin", args.fake_origin)) if on),
    }
    if want_waf:
        meta["versions"]["edge CRS"] = crs_version(WAF_EDGE_CRS / "crs-setup.conf.example")
    if want_modsec:
        for pkg in ("libnginx-mod-http-modsecurity", "libmodsecurity3", "modsecurity-crs"):
            meta["versions"][pkg] = deb_version(pkg)
    if want_varnish:
        meta["versions"]["varnish"] = (subprocess.run([varnishd_binary(), "-V"], capture_output=True, text=True)
                                       .stderr.strip().splitlines() or ["n/a"])[0]
    cache_dir: Path | None = None
    results: list[dict] = []
    failure = None
    ok = False
    try:
        for d in defs:
            for _, _, tool, *_ in d["sides"]:
                if tool != "storm":
                    tools.require("oha" if tool.startswith("oha") else tool)
        cert, key = make_cert(tmp)
        # Origin
        if args.fake_origin:
            origin, origin_url = start_fake_origin(tmp)
        else:
            origin_bin = ROOT / "target" / "release" / "origin"
            if not os.access(origin_bin, os.X_OK):
                raise BenchError(f"{origin_bin} missing: run `cargo build --release -p edge-runtime -p origin`")
            (tmp / "origin-dir").mkdir()
            origin, ready = start_json_ready(
                "origin", [str(origin_bin), "--listen", "127.0.0.1:0", "--dir", str(tmp / "origin-dir")], tmp)
            origin_url = ready.get("url") or ""
        m = re.match(r"http://([^/]+)/?$", origin_url)
        if not m:
            raise BenchError(f"origin ready line has no usable url: {origin_url!r}")
        origin_hostport = m.group(1)

        # nginx peer
        nginx = nginx_binary()
        ver = nginx_version(nginx)
        n_plain, n_tls = free_port(), free_port()
        while n_tls == n_plain:
            n_tls = free_port()
        if ver >= (1, 25, 1):
            tls_listen = f"listen 127.0.0.1:{n_tls} ssl;\n        http2 on;"
        else:
            tls_listen = f"listen 127.0.0.1:{n_tls} ssl http2;"
        nprefix = tmp / "nginx"
        nprefix.mkdir()
        # proxy_cache of the cache.bench server: on tmpfs when there is one (/dev/shm), linked
        # from the prefix; removed at the end of the run.
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs":
            cache_dir = Path(tempfile.mkdtemp(prefix="edge-bench-nginx-cache-", dir=shm))
            os.chmod(cache_dir, 0o755)  # the worker (nobody when started by root) creates the levels
            (nprefix / "cache").symlink_to(cache_dir)
        else:
            cache_dir = None
            (nprefix / "cache").mkdir()
        nginx_cache = nprefix / "cache" / "proxy_cache"
        meta["nginx_cache_fs"] = fs_type(nprefix / "cache")
        conf_text = render((BENCH / "nginx.conf.tmpl").read_text(), {
            "PREFIX": str(nprefix), "ORIGIN_HOSTPORT": origin_hostport, "PLAIN_PORT": str(n_plain),
            "TLS_LISTEN": tls_listen, "CERT": str(cert), "KEY": str(key), "CACHE_DIR": str(nginx_cache)})
        nginx_srv = start_nginx("nginx", conf_text, nprefix, [n_plain, n_tls])
        bases = {"nginx_plain": f"http://127.0.0.1:{n_plain}", "nginx_tls": f"https://127.0.0.1:{n_tls}"}
        servers = {"nginx": nginx_srv}

        # Edge
        if args.no_edge:
            servers["edge"] = nginx_srv
            bases.update(edge_plain=bases["nginx_plain"], edge_tls=bases["nginx_tls"])
        else:
            edge_bin = ROOT / "target" / "release" / "edge"
            if not os.access(edge_bin, os.X_OK):
                raise BenchError(f"{edge_bin} missing: run `cargo build --release -p edge-runtime -p origin`")
            cfg = tmp / "edge.toml"
            # waf-h1-1k only: an admin listener (the WAF's counters on /metrics) and a waf.bench
            # route with the waf module; other runs keep the edge's config as it was.
            admin_token = os.urandom(16).hex()
            waf_admin = ("[admin]\n"
                         'listen = "127.0.0.1:0"\n'
                         f"token = {json.dumps(admin_token)}\n\n") if want_waf else ""
            waf_route = ("[[routes]]\n"
                         f"host = {json.dumps(WAF_HOST)}\n"
                         'prefix = "/"\n'
                         'origin = "bench"\n'
                         "[routes.cache]\n"
                         "enabled = true\n"
                         "[[routes.modules]]\n"
                         'module = "waf"\n'
                         "[routes.modules.config]\n"
                         f"setup_file = {json.dumps(str(WAF_EDGE_CRS / 'crs-setup.conf.example'))}\n"
                         f"rules_dir = {json.dumps(str(WAF_EDGE_CRS / 'rules'))}\n"
                         'mode = "blocking"\n'
                         "paranoia = 1\n\n") if want_waf else ""
            cfg.write_text(
                "[server]\n"
                'listen = "127.0.0.1:0"\n'
                'plain_listen = "127.0.0.1:0"\n'
                "workers = 1\n\n"
                # The storm scenario opens 1,000 connections from 127.0.0.1 (default: 256 per IP).
                "[limits]\n"
                "max_connections_per_ip = 4096\n\n"
                "[logging]\n"
                "access_log = false\n"
                'level = "warn"\n\n'
                "[[tls.certs]]\n"
                f"cert = {json.dumps(str(cert))}\n"
                f"key = {json.dumps(str(key))}\n\n"
                "[origins.bench]\n"
                f"primary = {json.dumps(origin_url)}\n\n"
                "[cache]\n"
                "max_bytes = 536870912\n"
                "max_object_bytes = 16777216\n"
                "shards = 16\n\n"
                + waf_admin
                # Cache scenarios (hit-*, storm) send Host / :authority cache.bench: a caching
                # route (an exact host beats "*").
                + "[[routes]]\n"
                f"host = {json.dumps(CACHE_HOST)}\n"
                'prefix = "/"\n'
                'origin = "bench"\n'
                "[routes.cache]\n"
                "enabled = true\n\n"
                + "".join(
                    "[[routes]]\n"
                    f"host = {json.dumps(MODS_HOSTS[n])}\n"
                    'prefix = "/"\n'
                    'origin = "bench"\n'
                    "[routes.cache]\n"
                    "enabled = true\n"
                    + '[[routes.modules]]\nmodule = "headers"\n' * n
                    + "\n"
                    for n in sorted(MODS_HOSTS)
                )
                + waf_route
                + "[[routes]]\n"
                'host = "*"\n'
                'prefix = "/"\n'
                'origin = "bench"\n'
                # Proxying without cache: the scenarios h1-1k ... h3-1m measure the proxy path.
                "[routes.cache]\n"
                "enabled = false\n"
            )
            # The WAF route compiles CRS when the config loads: allow it more time to be ready.
            edge, ready = start_json_ready("edge", [str(edge_bin), "serve", "--config", str(cfg)], tmp,
                                           ready_timeout=READY_TIMEOUT * 3 if want_waf else READY_TIMEOUT)
            servers["edge"] = edge
            if want_waf:
                admin_url = (ready.get("admin_url") or "").rstrip("/")
                if not admin_url:
                    raise BenchError(f"edge ready line lacks admin_url (needed for the WAF counters): {ready}")
                edge.admin = (admin_url, admin_token)
                meta["edge_waf_route"] = waf_route.strip()
            https_url = (ready.get("https_url") or "").rstrip("/")
            plain_url = (ready.get("plain_url") or "").rstrip("/")
            if not https_url or not plain_url:
                raise BenchError(f"edge ready line lacks https_url/plain_url: {ready}")
            bases.update(edge_plain=plain_url, edge_tls=https_url)
            h3_port = ready.get("h3_udp_port")
            if h3_port:
                host = re.match(r"https://([^:/]+)", https_url).group(1)
                bases["edge_h3"] = f"https://{host}:{int(h3_port)}"
            elif any(d.get("h3") for d in defs):
                raise BenchError(f"edge ready line lacks h3_udp_port (needed for HTTP/3): {ready}")

        if want_modsec:
            modsec_srv, modsec_base = start_nginx_modsec(tmp, origin_hostport, nprefix / "cache" / "proxy_cache_waf")
            servers["nginxwaf"] = modsec_srv
            bases["nginxwaf_plain"] = modsec_base
            meta["modsec_rules"] = (tmp / "nginx-modsec" / "modsec" / "main.conf").read_text().strip()

        if want_varnish:
            varnish_srv, varnish_base, varnish_argv = start_varnish(tmp, origin_hostport)
            servers["varnish"] = varnish_srv
            bases["varnish_plain"] = varnish_base
            meta["varnish_cmd"] = shlex.join(varnish_argv)

        sanity_check({k: v for k, v in bases.items() if k not in ("edge_h3", "nginxwaf_plain")})
        if any(d.get("cache") for d in defs):
            meta["cache_setup"] = cache_setup_lines(meta, bool(varnish_note), args.no_edge)

        wait_for_load(args.max_load, args.load_wait)
        meta["load_before"] = loadavg()
        log(f"load average before start: {meta['load_before']}")

        tls_info = {}
        for d in defs:
            if d.get("kind") == "storm":
                results.append(run_storm(d, servers, bases, origin, args, tmp, origin_url))
                continue
            if d.get("kind") == "latency":
                results.append(run_latency(d, servers, bases, origin, tools, args, tmp, origin_url))
                continue
            res = run_scenario(d, servers, bases, origin, tools, args, tmp, origin_url)
            results.append(res)
            if d["tool"] == "h2load":
                for side in res["sides"]:
                    info = res["runs"][side][-1]["info"] if res["runs"][side] else {}
                    tls_info[side] = " ".join(str(info.get(k, "?")) for k in ("tls", "cipher", "alpn"))
        meta["tls_info"] = tls_info
        ok = True
    except BenchError as e:
        failure = str(e)
    finally:
        meta.setdefault("load_before", loadavg())
        PROCS.stop_all()
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)  # tmpfs: memory

    for note in skipped_notes:
        log(note)
    meta["skipped"] = skipped_notes
    report = build_report(meta, results, failure)
    out_name = "latest" if ok and not meta["self_test"] else ("self-test" if ok else "failed")
    (RESULTS / f"{out_name}.md").write_text(report + "\n")
    (RESULTS / f"{out_name}.json").write_text(json.dumps({"meta": meta, "results": results, "failure": failure},
                                                         indent=1, default=str) + "\n")
    print(report)
    if ok and not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"temp dir kept: {tmp}")
    log(f"report written to {RESULTS / (out_name + '.md')}")
    if failure:
        print(f"\nBENCHMARK FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
