#!/usr/bin/env python3
"""Soak: the node under mixed h1/h2/h3 load for a set time while it is operated — module
hot-swaps (signed deploys alternating two versions), purges, config reloads — reporting
errors (target 0), memory growth after warm-up (target flat) and open file descriptors
(target flat). Python stdlib; load from wrk (h1), h2load (h2) and oha (h3).

Normally started by bench/soak.sh, which installs the tools and builds the binaries:
    bench/soak.sh [--seconds 600]
Writes the report to stdout and bench/results/soak.md; exits 1 when a request or an
operation failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-admin-token-0123456789abcdef"


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def start(cmd: list[str], **kw) -> tuple[subprocess.Popen, dict]:
    """Starts a process that prints one JSON ready line on stdout."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"{cmd[0]} exited before it was ready")
        try:
            ready = json.loads(line)
        except ValueError:
            continue
        if ready.get("event") == "ready":
            return p, ready
    raise SystemExit(f"{cmd[0]} not ready within 60 s")


def admin(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url + path, data=body if method != "GET" else None, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def proc_stats(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600, help="load duration (default 600, at most 7200)")
    ap.add_argument("--op-interval", type=float, default=10.0, help="seconds between operations")
    args = ap.parse_args()
    seconds = max(30, min(args.seconds, 7200))
    edge = ROOT / "target/release/edge"
    origin_bin = ROOT / "target/release/origin"
    modules = sorted(glob.glob(str(ROOT / "target/release/build/edge-module-artifacts-*/out/test_module.wasm")), key=os.path.getmtime)
    if not modules:
        raise SystemExit("no test module built: run bench/soak.sh")
    v1 = Path(modules[-1])
    v2 = v1.with_name("test_module_v2.wasm")
    oha = ROOT / "bench/.tools/bin/oha"
    work = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")], check=True, capture_output=True)
        public = subprocess.run([str(edge), "module", "keygen", "--out", str(work / "team.pem")],
                                check=True, capture_output=True, text=True).stdout.strip()
        for i, src in enumerate([v1, v2]):
            shutil.copy(src, work / f"v{i + 1}.wasm")
            subprocess.run([str(edge), "module", "sign", "--key", str(work / "team.pem"), str(work / f"v{i + 1}.wasm")],
                           check=True, capture_output=True)
        (work / "library").mkdir()
        origin, oready = start([str(origin_bin), "--listen", "127.0.0.1:0", "--name", "soak", "--dir", str(work / "library")],
                               stderr=subprocess.DEVNULL)
        procs.append(origin)
        config = f"""[server]
listen = "127.0.0.1:0"
workers = 1
node_id = "soak"

[[tls.certs]]
cert = "cert.pem"
key = "key.pem"

[logging]
access_log = false
level = "warn"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[wasm]
trusted_keys = ["{public}"]

[modules.tagger]
path = "v1.wasm"

[origins.media]
primary = "{oready['url']}"

[[routes]]
prefix = "/object"
origin = "media"
[routes.cache]
enabled = false
[[routes.modules]]
module = "tagger"
config = {{ mode = "tag" }}

[[routes]]
prefix = "/"
origin = "media"
"""
        (work / "edge.toml").write_text(config)
        node, ready = start([str(edge), "serve", "--config", str(work / "edge.toml")],
                            cwd=work, stderr=open(work / "edge.log", "w"))
        procs.append(node)
        port = ready["tcp_addr"].rsplit(":", 1)[1]
        admin_url = ready["admin_url"]
        base = f"https://127.0.0.1:{port}"
        log(f"node pid {node.pid} on {base}, admin {admin_url}; {seconds} s of load")

        # Load: h1 cache hits on segments, h2 through the module (uncached), h3 manifests.
        d = f"{seconds}s"
        loads = {
            "h1 (wrk, 16 conns, segments, cached)": subprocess.Popen(
                ["wrk", "-t1", "-c16", "-d", d, "--latency", f"{base}/vod/sample/360p/seg_00001.ts"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            "h2 (h2load, 8 conns x 4 streams, module route)": subprocess.Popen(
                ["h2load", "-D", str(seconds), "-c8", "-m4", f"{base}/object/soak?size=2048"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            "h3 (oha, 8 conns, manifests)": subprocess.Popen(
                [str(oha), "--http-version", "3", "--insecure", "-c", "8", "-z", d, "--no-tui",
                 "--output-format", "json", f"{base}/vod/sample/master.m3u8"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        }
        samples: list[tuple[float, int, int]] = []
        ops = {"deploy": [0, 0], "purge": [0, 0], "reload": [0, 0]}
        op_errors: list[str] = []
        t0 = time.time()
        stop = threading.Event()

        def operate() -> None:
            n = 0
            while not stop.wait(args.op_interval):
                kind = ["deploy", "purge", "reload"][n % 3]
                n += 1
                if kind == "deploy":
                    v = 2 if (n // 3) % 2 == 0 else 1
                    body = (work / f"v{v}.wasm").read_bytes()
                    sig = (work / f"v{v}.wasm.sig").read_text().strip()
                    status, text = admin(admin_url, "PUT", "/modules/tagger", body, {"edge-signature": sig})
                    ok = status == 201
                elif kind == "purge":
                    status, text = admin(admin_url, "POST", "/purge",
                                         json.dumps({"prefix": f"https://127.0.0.1:{port}/vod/"}).encode())
                    ok = status == 200
                else:
                    # Toggle a route: reloads that change something.
                    cfg = (work / "edge.toml").read_text()
                    extra = '\n[[routes]]\nprefix = "/extra"\norigin = "media"\n'
                    cfg = cfg.replace(extra, "") if extra in cfg else cfg + extra
                    (work / "edge.toml").write_text(cfg)
                    status, text = admin(admin_url, "POST", "/reload")
                    ok = status == 200
                ops[kind][0 if ok else 1] += 1
                if not ok:
                    op_errors.append(f"{kind}: {status} {text.strip()[:200]}")

        def sample() -> None:
            while not stop.wait(5):
                try:
                    rss, fds = proc_stats(node.pid)
                except OSError:
                    return
                samples.append((time.time() - t0, rss, fds))

        threads = [threading.Thread(target=operate, daemon=True), threading.Thread(target=sample, daemon=True)]
        for t in threads:
            t.start()
        outputs = {name: p.communicate(timeout=seconds + 120)[0] for name, p in loads.items()}
        stop.set()
        for t in threads:
            t.join(timeout=70)
        alive = node.poll() is None

        # Results.
        results = {}
        notes: list[str] = []
        w = outputs["h1 (wrk, 16 conns, segments, cached)"]
        reqs = int(re.search(r"(\d+) requests in", w).group(1)) if re.search(r"(\d+) requests in", w) else 0
        errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", w))
        non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", w)) else 0
        results["h1 (wrk, 16 conns, segments, cached)"] = (reqs, errs + non2xx)
        h = outputs["h2 (h2load, 8 conns x 4 streams, module route)"]
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", h)
        s2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", h)
        if m and s2:
            results["h2 (h2load, 8 conns x 4 streams, module route)"] = (int(m.group(3)), int(m.group(5)) + int(m.group(6)) + int(s2.group(3)) + int(s2.group(4)))
        else:
            results["h2 (h2load, 8 conns x 4 streams, module route)"] = (0, 1)
        o = outputs["h3 (oha, 8 conns, manifests)"]
        try:
            j = json.loads(o[o.index("{"):])
            dist = j.get("statusCodeDistribution", {})
            ok3 = int(dist.get("200", 0))
            errors3 = j.get("errorDistribution") or {}
            # oha cuts the requests in flight when -z ends: its own deadline, not a failure.
            cut = sum(int(v) for k, v in errors3.items() if "deadline" in k)
            bad3 = sum(int(v) for k, v in dist.items() if k != "200") + sum(int(v) for k, v in errors3.items() if "deadline" not in k)
            results["h3 (oha, 8 conns, manifests)"] = (ok3 + bad3, bad3)
            if errors3:
                notes.append(f"oha's errors: {json.dumps(errors3)} ({cut} cut by its own -z deadline, not counted)")
        except ValueError:
            results["h3 (oha, 8 conns, manifests)"] = (0, 1)

        warm = [s for s in samples if s[0] >= min(60, seconds * 0.2)]
        first, last = (warm[0], warm[-1]) if len(warm) >= 2 else (samples[0], samples[-1])
        peak = max(s[1] for s in samples)
        total_errors = sum(e for _, e in results.values()) + sum(f for _, f in ops.values())
        lines = [
            f"# Soak — {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            "",
            f"`bench/soak.sh --seconds {seconds}` on {os.cpu_count()} cores; node: 1 worker, access log off.",
            "",
            "| load | requests | failed |",
            "|---|---:|---:|",
        ] + [f"| {k} | {v[0]:,} | {v[1]} |" for k, v in results.items()] + [
            "",
            "| operation (every %.0f s, in turn) | ok | failed |" % args.op_interval,
            "|---|---:|---:|",
        ] + [f"| {k} | {v[0]} | {v[1]} |" for k, v in ops.items()] + [
            "",
            f"- node still running at the end: {'yes' if alive else 'NO'}",
            f"- RSS after warm-up ({first[0]:.0f} s): {first[1] / 1024:.1f} MiB; at the end ({last[0]:.0f} s): "
            f"{last[1] / 1024:.1f} MiB ({(last[1] - first[1]) / 1024:+.1f} MiB); peak {peak / 1024:.1f} MiB",
            f"- open file descriptors after warm-up: {first[2]}; at the end: {last[2]}; "
            f"range {min(s[2] for s in warm or samples)}–{max(s[2] for s in warm or samples)}",
            f"- errors in total: {total_errors}",
        ]
        lines += [f"- {n}" for n in notes]
        if op_errors:
            lines += ["", "Failed operations:", ""] + [f"- {e}" for e in op_errors[:20]]
        lines += ["", "RSS (MiB) and fds every 5 s: " + ", ".join(f"{s[0]:.0f}s {s[1] / 1024:.0f}/{s[2]}" for s in samples[:: max(1, len(samples) // 24)])]
        report = "\n".join(lines) + "\n"
        print(report)
        out = ROOT / "bench/results"
        out.mkdir(exist_ok=True)
        (out / "soak.md").write_text(report)
        return 0 if total_errors == 0 and alive else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
