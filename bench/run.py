#!/usr/bin/env python3
"""Edge vs nginx benchmark harness (python3 stdlib only).

Method: /work/shared/design/BENCHMARKING.md. In short: both servers run with one worker in
front of the same origin process; runs alternate A/B/A/B after a warm-up; the primary metric
is server CPU per request (utime+stime from /proc/PID/stat over the run, divided by the 2xx
responses); the report shows medians per server and the ratio edge/nginx.

Normally started by bench/run.sh, which installs the tools and builds the binaries.
Progress goes to stderr; the markdown report goes to stdout and bench/results/latest.md.

Options for testing the harness itself (not for real numbers):
  --no-edge      benchmark nginx only (skips the HTTP/3 scenario)
  --fake-origin  use a second nginx serving static files as the origin instead of
                 target/release/origin
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import socket
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


def start_json_ready(name: str, argv: list[str], logdir: Path) -> tuple[Server, dict]:
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
        obj = q.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        PROCS.stop(proc)
        raise BenchError(
            f"{name} did not print its ready line within {READY_TIMEOUT:.0f} s\n"
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


# --------------------------------------------------------------------------------------
# Sanity checks over the stdlib HTTP client (HTTP/1.1, plain or TLS)


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    m = re.match(r"(https?)://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise BenchError(f"bad URL {url}")
    scheme, host, port, path = m.group(1), m.group(2), int(m.group(3)), m.group(4) or "/"
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


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


def parse_oha(out: str, duration: float) -> dict:
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
    return {
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


class Tools:
    def __init__(self) -> None:
        self.wrk = shutil.which("wrk")
        self.h2load = shutil.which("h2load")
        local_oha = BENCH / ".tools" / "bin" / "oha"
        self.oha = str(local_oha) if os.access(local_oha, os.X_OK) else shutil.which("oha")
        self.oha_json_flag = ["--output-format", "json"]
        if self.oha:
            help_text = subprocess.run([self.oha, "--help"], capture_output=True, text=True).stdout
            if "--output-format" not in help_text and "--json" in help_text:
                self.oha_json_flag = ["--json"]  # older oha releases
            if "--http-version" not in help_text:
                log("WARNING: this oha has no --http-version flag; the HTTP/3 scenario will fail")

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


def tool_cmd(tools: Tools, tool: str, url: str, duration: int, sc: dict, extra_log: Path | None = None) -> list[str]:
    if tool == "wrk":
        return [tools.require("wrk"), f"-t{sc['threads']}", f"-c{sc['conns']}", f"-d{duration}s", "--latency", url]
    if tool == "h2load":
        cmd = [tools.require("h2load"), f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", str(duration)]
        if extra_log is not None:
            cmd += ["--log-file", str(extra_log)]
        return cmd + [url]
    if tool in ("oha-h3", "oha-h1"):
        version = "3" if tool == "oha-h3" else "1.1"
        return [tools.require("oha"), "--http-version", version, "--insecure", "-z", f"{duration}s",
                "-c", str(sc["conns"]), "--no-tui", *tools.oha_json_flag, url]
    raise AssertionError(tool)


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
            tmp: Path, h2_log: Path | None = None) -> dict:
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
        r = parse_oha(out, float(duration))
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


def scenario_defs(h1_peer: str) -> list[dict]:
    h1_label = "edge-h1 (TLS)" if h1_peer == "tls" else "edge-h1 (plain)"
    return [
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
    ]


def run_scenario(sc: dict, servers: dict[str, Server], bases: dict[str, str], origin: Server,
                 tools: Tools, args, tmp: Path) -> dict:
    log(f"=== {sc['title']} ===")
    path = f"/bytes/{sc['size']}"
    sides = []
    for label, base_key, tool in sc["sides"]:
        server = servers["edge"] if label.startswith("edge") else servers["nginx"]
        sides.append((label, server, bases[base_key] + path, tool))
    result = {"id": sc["id"], "title": sc["title"], "size": sc["size"], "primary": sc["primary"],
              "sides": [s[0] for s in sides], "runs": {s[0]: [] for s in sides}, "cmds": {}}
    for label, server, url, tool in sides:
        h2_log = tmp / "h2load.log" if tool == "h2load" else None
        result["cmds"][label] = shlex.join(tool_cmd(tools, tool, url, args.duration, sc, h2_log))
        if args.warmup > 0:
            log(f"warm-up {label} {args.warmup}s")
            warm_up(tool_cmd(tools, tool, url, args.warmup, sc), args.warmup, tmp / "warmup.txt")
    for i in range(args.runs):
        for label, server, url, tool in sides:  # strict alternation A B A B ...
            time.sleep(args.pause)
            h2_log = tmp / "h2load.log" if tool == "h2load" else None
            if h2_log is not None and h2_log.exists():
                h2_log.unlink()
            argv = tool_cmd(tools, tool, url, args.duration, sc, h2_log)
            log(f"run {i + 1}/{args.runs} {label}: {shlex.join(argv)}")
            r = measure(f"{sc['id']}-{label.split()[0]}-{i + 1}", server, origin, tool, argv,
                        args.duration, tmp, h2_log)
            result["runs"][label].append(r)
            log(f"  {r['rps']:.0f} req/s, {mib_s(r, sc['size']):.1f} MiB/s, "
                f"p99 {fmt(r['p99_ms'], 2)} ms, CPU {fmt(r['cpu_us_per_req'], 2)} µs/req "
                f"(server {r['server_cpu_pct']:.0f}% of a core), bad {r['bad']}")
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
    a, b = res["sides"]
    sa, sb = summarize(res["runs"][a], res["size"]), summarize(res["runs"][b], res["size"])
    res["medians"] = {a: sa, b: sb}
    mib_first = res["primary"] == "mib"
    cols = [("rps", "req/s", 0), ("mib_s", "MiB/s", 1), ("p50_ms", "p50 ms", 2), ("p99_ms", "p99 ms", 2),
            ("cpu_us", "CPU µs/req", 2), ("origin_cpu_us", "origin CPU µs/req", 2),
            ("cpu_pct", "server CPU %", 0), ("rss_mib", "peak RSS MiB", 1), ("bad", "non-2xx+errors", 0)]
    if mib_first:
        cols[0], cols[1] = cols[1], cols[0]
    primary_key = "mib_s" if mib_first else "cpu_us"
    head = ["server"] + [f"**{h}**" if k == primary_key else h for k, h, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in ((a, sa), (b, sb)):
        lines.append("| " + " | ".join([name] + [fmt(s[k], d) for k, _, d in cols]) + " |")
    ratio_keys = {"rps", "mib_s", "p50_ms", "p99_ms", "cpu_us", "rss_mib"}
    cells = [f"**{a} / {b}**"]
    for k, _, _ in cols:
        cells.append(fmt(ratio(sa[k], sb[k]), 2) + "×" if k in ratio_keys and ratio(sa[k], sb[k]) is not None else "")
    lines.append("| " + " | ".join(cells) + " |")
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
             "nginx: master + worker; any child processes of the edge count too) ÷ 2xx responses. `origin CPU µs/req` is the origin process over "
             "the same window (≈0 when the edge serves from cache). `server CPU %` is of one core. "
             "Latency is at saturation (closed-loop tools), not at a fixed rate. MiB/s = 2xx × body size "
             "÷ duration. Peak RSS is VmHWM since process start (nginx: largest of master/worker).")
    L.append("- One server worker each: edge `workers = 1`, access log off, log level warn; nginx `worker_processes 1`, "
             "plain `proxy_pass` (no cache) with upstream `keepalive 64`, `keepalive_requests 1000000`, "
             "`proxy_max_temp_file_size 0`, access log off. Same origin process for both.")
    if meta.get("tls_info"):
        L.append("- TLS as negotiated by h2load: " + "; ".join(f"{k}: {v}" for k, v in meta["tls_info"].items()))
    L.append("")
    for res in results:
        L.append(f"## {res['title']}")
        L.append("")
        L.extend(scenario_table(res))
        L.append("")
        if res["id"].startswith("h3"):
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
        L.extend(runs_table(res))
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
    ap.add_argument("--only", help="comma-separated scenario ids: h1-1k,h2-1k,h1-1m,h3-1k,h3-1m")
    ap.add_argument("--no-h3", action="store_true", help="skip the HTTP/3 scenarios (no oha needed)")
    ap.add_argument("--h1-peer", choices=("tls", "plain"), default="tls",
                    help="HTTP/1.1 side of the HTTP/3 comparison: over TLS (default) or plaintext")
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

    defs = scenario_defs(args.h1_peer)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {d["id"] for d in defs}
        if unknown:
            ap.error(f"unknown scenario(s): {sorted(unknown)}")
        defs = [d for d in defs if d["id"] in wanted]
    if args.no_h3 or args.no_edge:
        defs = [d for d in defs if not d.get("h3")]

    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp", dir=RESULTS))
    os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user when started by root
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python3", "bench/run.py", *sys.argv[1:]])
    tools = Tools()

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
    results: list[dict] = []
    failure = None
    ok = False
    try:
        for d in defs:
            for _, _, tool in d["sides"]:
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
        conf_text = render((BENCH / "nginx.conf.tmpl").read_text(), {
            "PREFIX": str(nprefix), "ORIGIN_HOSTPORT": origin_hostport, "PLAIN_PORT": str(n_plain),
            "TLS_LISTEN": tls_listen, "CERT": str(cert), "KEY": str(key)})
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
            cfg.write_text(
                "[server]\n"
                'listen = "127.0.0.1:0"\n'
                'plain_listen = "127.0.0.1:0"\n'
                "workers = 1\n\n"
                "[logging]\n"
                "access_log = false\n"
                'level = "warn"\n\n'
                "[[tls.certs]]\n"
                f"cert = {json.dumps(str(cert))}\n"
                f"key = {json.dumps(str(key))}\n\n"
                "[origins.bench]\n"
                f"primary = {json.dumps(origin_url)}\n\n"
                "[[routes]]\n"
                'host = "*"\n'
                'prefix = "/"\n'
                'origin = "bench"\n'
                # Proxying without cache: the scenarios here measure the proxy path.
                "[routes.cache]\n"
                "enabled = false\n"
            )
            edge, ready = start_json_ready("edge", [str(edge_bin), "serve", "--config", str(cfg)], tmp)
            servers["edge"] = edge
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

        sanity_check({k: v for k, v in bases.items() if k != "edge_h3"})

        wait_for_load(args.max_load, args.load_wait)
        meta["load_before"] = loadavg()
        log(f"load average before start: {meta['load_before']}")

        tls_info = {}
        for d in defs:
            res = run_scenario(d, servers, bases, origin, tools, args, tmp)
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
