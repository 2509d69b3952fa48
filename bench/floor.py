#!/usr/bin/env python3
"""The HTTP/1.1 floors: server CPU per 1 KiB request.

`floor.py [proxy] [ROUNDS]`, every answer from the origin:

  edge            the node (`workers = 1`, plaintext listener, caching off on the route,
                  access log off)
  floor pooled    a bare hyper proxy with hyper-util's pooled client (as the node uses)
  floor in-task   a bare hyper proxy driving its origin connection in the request's task
  nginx           `proxy_pass` with upstream keepalive (one worker)

`floor.py hit [ROUNDS]`, every answer a cache hit (the origin's count must not move):

  edge            the node, caching on the route
  floor static    a bare hyper server answering the same 1 KiB from memory: hyper alone
  nginx           `proxy_cache` (cache directory on tmpfs, as bench/run.py sets it up)

all in front of the same origin process, with `wrk -t2 -c64` against each in turn for
ROUNDS rounds (default 3), 8 s each after a 2 s warm-up. CPU µs/req = (utime+stime of the
server over the run) / requests. Prints a markdown table (medians, ratios to nginx) and
writes it to bench/results/floor.md (floor-hit.md for hits).

Run through bench/floor.sh, which builds the binaries. Method: BENCHMARKING.md; the
point is the ratios within one run, since this machine's absolute figures drift.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
HZ = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def first_line(proc: subprocess.Popen, what: str) -> str:
    line = proc.stdout.readline()
    if not line:
        sys.exit(f"floor: {what} exited before it was ready")
    return line


def origin_count(origin_addr: str, path: str) -> int:
    import urllib.request
    with urllib.request.urlopen(f"http://{origin_addr}/counts?path={path}", timeout=10) as r:
        return int(r.read().decode().strip())


def wrk(url: str, seconds: int) -> str:
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 30)
    return out.stdout


def main() -> None:
    args = sys.argv[1:]
    hits = bool(args) and args[0] == "hit"
    if args and args[0] in ("hit", "proxy"):
        args = args[1:]
    rounds = int(args[0]) if args else 3
    # The hit object is fresh for the whole run; the proxy path is never cached.
    path = "/object/hit1k" if hits else "/bytes/1024"
    target = f"{path}?cc=max-age%3D3600&size=1024" if hits else path
    tmp = Path(tempfile.mkdtemp(prefix="floor-"))
    procs: list[subprocess.Popen] = []
    dirs_cleanup: list[Path] = []
    try:
        origin = subprocess.Popen([str(RELEASE / "origin"), "--listen", "127.0.0.1:0",
                                   "--dir", str(tmp / "origin-dir")],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(origin)
        origin_port = int(re.search(r"127\.0\.0\.1:(\d+)", first_line(origin, "origin")).group(1))
        origin_addr = f"127.0.0.1:{origin_port}"

        servers = []
        for mode in (["static"] if hits else ["pooled", "in-task"]):
            p = subprocess.Popen([str(RELEASE / "examples" / "floor_proxy"), mode, origin_addr],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            servers.append((f"floor {mode}", p.pid, int(first_line(p, f"floor {mode}"))))

        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp / "key.pem"),
                        "-out", str(tmp / "cert.pem"), "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        (tmp / "edge.toml").write_text(f"""[server]
listen = "127.0.0.1:0"
plain_listen = "127.0.0.1:0"
workers = 1

[logging]
access_log = false
level = "warn"

[[tls.certs]]
cert = "{tmp / 'cert.pem'}"
key = "{tmp / 'key.pem'}"

[origins.o]
primary = "http://{origin_addr}"

[[routes]]
host = "*"
prefix = "/"
origin = "o"
[routes.cache]
enabled = {"true" if hits else "false"}
""")
        edge = subprocess.Popen([str(RELEASE / "edge"), "serve", "--config", str(tmp / "edge.toml")],
                                stdout=subprocess.PIPE, text=True)
        procs.append(edge)
        ready = json.loads(first_line(edge, "edge"))
        servers.insert(0, ("edge", edge.pid, int(ready["plain_url"].rsplit(":", 1)[1])))

        (tmp / "logs").mkdir()
        cache = ""
        cache_directives = ""
        if hits:
            # nginx caches in files: on tmpfs its hits come from memory, as bench/run.py has it.
            shm = Path(tempfile.mkdtemp(prefix="floor-cache-", dir="/dev/shm"))
            dirs_cleanup.append(shm)
            cache = (f"proxy_cache_path {shm} levels=1:2 keys_zone=floor:32m use_temp_path=off; "
                     "open_file_cache max=1000;")
            cache_directives = ("proxy_cache floor; proxy_cache_valid 200 10m; "
                                "proxy_cache_lock on;")
        (tmp / "nginx.conf").write_text(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {cache}
  upstream o {{ server {origin_addr}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:0; keepalive_requests 1000000;
    location / {{ proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_max_temp_file_size 0; {cache_directives} }}
  }}
}}
""")
        # nginx cannot report a port it picked: take a free one first.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            nginx_port = s.getsockname()[1]
        conf = (tmp / "nginx.conf").read_text().replace("listen 127.0.0.1:0", f"listen 127.0.0.1:{nginx_port}")
        (tmp / "nginx.conf").write_text(conf)
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = subprocess.Popen([nginx_bin, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
        procs.append(nginx)
        deadline = time.time() + 10
        worker = None
        while worker is None and time.time() < deadline:
            kids = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True, text=True).stdout.split()
            worker = int(kids[0]) if kids else None
            time.sleep(0.05)
        if worker is None:
            sys.exit("floor: nginx did not start a worker")
        servers.append(("nginx", worker, nginx_port))

        results: dict[str, list[float]] = {name: [] for name, _, _ in servers}
        for r in range(rounds):
            for name, pid, port in servers:
                url = f"http://127.0.0.1:{port}{target}"
                wrk(url, 2)
                seen_before = origin_count(origin_addr, path)
                before = cpu_ticks(pid)
                out = wrk(url, 8)
                after = cpu_ticks(pid)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: ", out)
                if bad or n == 0:
                    sys.exit(f"floor: {name} answered badly:\n{out}")
                asked = origin_count(origin_addr, path) - seen_before
                # Proxying: every answer came from the origin. Hits: none did.
                if not hits and asked < n:
                    sys.exit(f"floor: {name} answered {n} requests without asking the origin")
                if hits and asked > 0:
                    sys.exit(f"floor: {name} asked the origin {asked} times during a hit run")
                us = (after - before) / HZ * 1e6 / n
                results[name].append(us)
                print(f"[floor] round {r + 1} {name}: {n} requests, {us:.2f} CPU µs/req", file=sys.stderr)
    finally:
        for p in procs:
            # SIGTERM: nginx's master then stops its workers (SIGKILL would orphan them).
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        for path_ in dirs_cleanup:
            shutil.rmtree(path_, ignore_errors=True)

    nginx_median = statistics.median(results["nginx"])
    lines = [
        f"# HTTP/1.1 {'cache hit' if hits else 'proxy'} floor — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`python3 bench/floor.py {'hit' if hits else 'proxy'} {rounds}` on {os.cpu_count()} CPUs; "
        "1 KiB bodies, `wrk -t2 -c64`, "
        f"{rounds} alternating rounds of 8 s; medians.",
        "",
        "| server | CPU µs/req | / nginx | runs |",
        "|---|---|---|---|",
    ]
    for name, values in results.items():
        m = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {m:.2f} | {m / nginx_median:.2f}× | {runs} |")
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("floor-hit.md" if hits else "floor.md")).write_text(report)


if __name__ == "__main__":
    main()
