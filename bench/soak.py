#!/usr/bin/env python3
"""`make soak`: cnf-guard under sustained mixed traffic, as fast as the machine goes.

Same topology as `make bench` (bench/run.py), with one server listener running
cnf-guard's default configuration and two client listeners in front of it:

    wrk A ─► client Envoy, client-1 certificate ─┐
                                                 ├─► server Envoy (jwt_authn + cnf-guard)
    wrk B ─► client Envoy, client-2 certificate ─┘

Both send client-1's bound token, so every A request must be allowed and every
B request (a stolen token) denied with mtls-binding-mismatch. After the run:
zero wrong verdicts (Envoy's 2xx/4xx and cnf-guard's counters agree with the
streams), zero 5xx, and the wasm VMs' memory no larger than after warm-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import (  # noqa: E402  (the bench's harness, reused as is)
    Envoy,
    Variant,
    client_yaml,
    process_rss_kib,
    run_wrk,
    server_yaml,
    wasm_filter,
    wasm_memory,
)

SERVER = "cnf_guard"


def client_config(material: Path, server_port: int) -> str:
    """Two client listeners to the one server listener: `allowed` presents
    client-1's certificate, `stolen` client-2's."""
    streams = [Variant("allowed", "", ""), Variant("stolen", "", "")]
    yaml = client_yaml(material, {"allowed": server_port, "stolen": server_port}, streams)
    stolen_cluster = yaml.index("  - name: stolen\n    type: STATIC")
    return yaml[:stolen_cluster] + yaml[stolen_cluster:].replace("client-1.", "client-2.")


def memory_kib(server: Envoy) -> tuple[int, int]:
    """(committed KiB of all wasm linear memories, Envoy RSS KiB)."""
    return sum(c for c, _ in wasm_memory(server.process.pid)), process_rss_kib(server.process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default=os.environ.get("ENVOY_BIN", "envoy"))
    parser.add_argument("--material", type=Path, required=True)
    parser.add_argument("--cnf-guard-wasm", type=Path, required=True)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing (make soak installs it)")
    material, wasm = args.material.resolve(), args.cnf_guard_wasm.resolve()
    token = (material / "token-client-1.jwt").read_text().strip()
    variant = Variant(SERVER, "cnf-guard", wasm_filter("cnf-guard", "cnf-guard", wasm, "{}"))

    workdir = Path(tempfile.mkdtemp(prefix="cnf-guard-soak-"))
    base_id = 8000 + os.getpid() % 1000
    server = Envoy(args.envoy, workdir, "server", server_yaml(material, [variant]), "1", base_id)
    client = None
    problems = []
    try:
        client = Envoy(args.envoy, workdir, "client", client_config(material, server.listener_ports()[SERVER]),
                       "0", base_id + 1)
        ports = client.listener_ports()
        urls = {name: f"http://127.0.0.1:{ports[name]}/orders/7" for name in ("allowed", "stolen")}
        # Warm-up: the VMs reach their working size before memory is first read.
        for url in urls.values():
            run_wrk(url, token, 3, args.connections, "0")
        time.sleep(1.5)  # one counter flush
        stats_before, memory_before = server.stats(), memory_kib(server)

        results = {}

        def stream(name: str) -> None:
            results[name] = run_wrk(urls[name], token, args.seconds, args.connections, "0")

        print(f"soaking for {args.seconds} s ...", file=sys.stderr)
        threads = [threading.Thread(target=stream, args=(name,)) for name in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.5)  # the last counter flush
        stats_after, memory_after = server.stats(), memory_kib(server)
    finally:
        if client is not None:
            client.stop()
        server.stop()

    def delta(name: str) -> int:
        return stats_after.get(name, 0) - stats_before.get(name, 0)

    allowed, stolen = results["allowed"], results["stolen"]
    served_2xx = delta(f"http.{SERVER}.downstream_rq_2xx")
    served_4xx = delta(f"http.{SERVER}.downstream_rq_4xx")
    served_5xx = delta(f"http.{SERVER}.downstream_rq_5xx")
    counted_allowed = delta("wasmcustom.cnf_guard.allowed")
    counted_mismatch = delta("wasmcustom.cnf_guard.denied.mtls_binding_mismatch")
    counted_denied = sum(delta(n) for n in stats_after if n.startswith("wasmcustom.cnf_guard.denied."))

    if allowed["non2xx_wrk"] or allowed["socket_errors"]:
        problems.append(f"allowed stream: {allowed['non2xx_wrk']} non-2xx, {allowed['socket_errors']} socket errors")
    if stolen["non2xx_wrk"] != stolen["requests"]:
        problems.append(f"stolen stream: {stolen['requests'] - stolen['non2xx_wrk']} of {stolen['requests']} were 2xx")
    if served_5xx:
        problems.append(f"{served_5xx} 5xx at the server")
    if counted_allowed != served_2xx:
        problems.append(f"cnf-guard allowed {counted_allowed}, Envoy served {served_2xx} 2xx")
    if counted_mismatch != served_4xx or counted_denied != counted_mismatch:
        problems.append(f"cnf-guard denied {counted_denied} ({counted_mismatch} mismatch), Envoy served {served_4xx} 4xx")
    # wrk stops mid-request; Envoy may have completed a few more than wrk counted.
    for name, sent, served in (("allowed", allowed["requests"], served_2xx), ("stolen", stolen["requests"], served_4xx)):
        if not 0 <= served - sent <= args.connections:
            problems.append(f"{name}: wrk completed {sent}, the server {served}")
    if memory_after[0] > memory_before[0]:
        problems.append(f"wasm memory grew from {memory_before[0]} to {memory_after[0]} KiB")

    total = allowed["requests"] + stolen["requests"]
    print(f"""
| soak ({args.seconds} s, {args.connections}+{args.connections} connections) | value |
|---|---:|
| requests | {total} ({total / args.seconds:.0f}/s) |
| allowed stream: 2xx / cnf-guard allowed | {served_2xx} / {counted_allowed} |
| stolen stream: 4xx / cnf-guard mtls-binding-mismatch | {served_4xx} / {counted_mismatch} |
| wrong verdicts | {len([p for p in problems if 'memory' not in p])} |
| 5xx | {served_5xx} |
| wasm linear memory, committed KiB (after warm-up → end) | {memory_before[0]} → {memory_after[0]} |
| server Envoy RSS KiB (after warm-up → end) | {memory_before[1]} → {memory_after[1]} |
""")
    shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        sys.exit("soak failed:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
