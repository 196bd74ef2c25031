#!/usr/bin/env python3
"""`make bench-store-choice`: which store for the fleet-wide DPoP replay cache
(issue 16), with figures.

The filter would reach the store from Envoy with `dispatch_http_call` and do
one atomic create-if-absent with expiry per DPoP request. Two candidates, each
started here on random loopback ports in a temporary directory:

  redis+webdis  GET /SET/<key>/1/NX/EX/<window>; webdis allows SET only.
                200 {"SET":[true,"OK"]} = created, 200 {"SET":null} = exists.
  etcd          POST /v3/kv/txn (the v3 JSON gateway): compare
                create_revision == 0 on the key, on success a put under a
                lease. One lease of 2 x window is granted per window and
                reused, so a key lives between one and two windows.
                200 with "succeeded": true = created, without = exists.

Keys are `cnf_guard:dpop_jti:` + a 22-character base64url fingerprint, the
window is 70 s (max_age_seconds 60 + max_clock_skew_seconds 10, the defaults).

Measured for each, over keep-alive HTTP/1.1 connections: sequential latency of
one create (http.client, one connection), throughput with 16 connections (wrk,
a Lua script making a fresh key per request) and the store's own CPU per
create (/proc/<pid>/stat), memory per stored key, that a second create of a
key says "exists" and that of 16 clients racing on one key exactly one
creates it, and what a client sees when the store is stopped (SIGSTOP: slow)
and killed (down), and how soon it answers again once restarted.

The stores run pinned to CPU 1, the clients to CPU 0 (with 2+ CPUs and
taskset). etcd's data directory is on the temporary directory's disk: it
fsyncs its write-ahead log on every write, as a deployed etcd does; Redis
runs with persistence off (--save '' --appendonly no).

Only the standard library (and the redis-server, webdis, etcd and wrk
binaries). Takes about a minute.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KEY_PREFIX = "cnf_guard:dpop_jti:"
WINDOW_SECONDS = 70
# A create the filter would wait for at most this long (its timeout).
CLIENT_TIMEOUT_S = 0.5

WRK_COMMON = r"""
-- A fresh key per request: prefix .. run nonce (12) .. counter (10 digits).
local prefix, nonce, counter = "", "", 0
created, exists, other = 0, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function next_key()
  counter = counter + 1
  return prefix .. nonce .. string.format("%010d", counter)
end

function done(summary, latency, requests)
  local c, e, o = 0, 0, 0
  for _, thread in ipairs(threads) do
    c = c + thread:get("created")
    e = e + thread:get("exists")
    o = o + thread:get("other")
  end
  io.write(string.format("outcomes created=%d exists=%d other=%d\n", c, e, o))
end
"""

WRK_WEBDIS = WRK_COMMON + r"""
local window
function init(args)
  prefix, nonce, window = args[1], args[2], args[3]
end

function request()
  return wrk.format("GET", "/SET/" .. next_key() .. "/1/NX/EX/" .. window)
end

function response(status, headers, body)
  if status == 200 and body:find("true", 1, true) then created = created + 1
  elseif status == 200 and body:find("null", 1, true) then exists = exists + 1
  else other = other + 1 end
end
"""

WRK_ETCD = WRK_COMMON + r"""
local lease
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chunk = {}
    for j = 3, 0, -1 do
      local index = math.floor(n / 64 ^ j) % 64
      chunk[#chunk + 1] = alphabet:sub(index + 1, index + 1)
    end
    if not b then chunk[3], chunk[4] = "=", "=" elseif not c then chunk[4] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

function init(args)
  prefix, nonce, lease = args[1], args[2], args[3]
end

function request()
  local key = base64(next_key())
  local body = '{"compare":[{"key":"' .. key .. '","target":"CREATE","result":"EQUAL","create_revision":"0"}],'
    .. '"success":[{"requestPut":{"key":"' .. key .. '","value":"MQ==","lease":"' .. lease .. '"}}]}'
  return wrk.format("POST", "/v3/kv/txn", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 and body:find('"succeeded":true', 1, true) then created = created + 1
  elseif status == 200 then exists = exists + 1
  else other = other + 1 end
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fingerprint() -> str:
    """22 base64url characters, as the filter's 16-byte proof hash gives."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def wait_until(check, what: str, timeout: float = 20) -> float:
    """Polls `check` until it is true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Store:
    """One candidate: its processes, and the create-if-absent over HTTP."""

    name = ""
    wrk_script = ""

    def __init__(self, workdir: Path, cpus: str | None):
        self.workdir = workdir
        self.cpus = cpus
        self.processes: dict[str, subprocess.Popen] = {}
        self.http_port = 0

    def spawn(self, role: str, command: list[str]) -> subprocess.Popen:
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        log = open(self.workdir / f"{role}.log", "ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        self.processes[role] = process
        return process

    def connection(self, timeout: float = 5) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.poll() is None]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def create(self, conn: http.client.HTTPConnection, key: str) -> str:
        raise NotImplementedError

    def ready(self) -> bool:
        conn = self.connection(timeout=1)
        try:
            return self.create(conn, KEY_PREFIX + "ready-" + fingerprint()) == "created"
        finally:
            conn.close()


class Webdis(Store):
    name = "redis + webdis"
    wrk_script = WRK_WEBDIS
    backend_role = "redis-server"

    def start(self) -> None:
        self.redis_port = free_port()
        self.http_port = free_port()
        self.start_redis()
        wait_until(lambda: self.redis_command("PING") == "+PONG", "redis-server")
        config = {
            "redis_host": "127.0.0.1", "redis_port": self.redis_port,
            "http_host": "127.0.0.1", "http_port": self.http_port,
            "threads": 2, "pool_size": 16, "daemonize": False, "database": 0,
            "acl": [{"disabled": ["*"]}, {"enabled": ["SET"]}],
            "verbosity": 3, "logfile": str(self.workdir / "webdis.log"),
        }
        (self.workdir / "webdis.json").write_text(json.dumps(config))
        self.spawn("webdis", ["webdis", str(self.workdir / "webdis.json")])
        wait_until(self.ready, "webdis")

    def start_redis(self) -> None:
        self.spawn("redis-server", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                                    "--dir", str(self.workdir)])

    def redis_command(self, *words: str) -> str:
        """One command straight to Redis (RESP), for what webdis's ACL refuses."""
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=2) as s:
            s.sendall(f"*{len(words)}\r\n".encode() + b"".join(
                f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words))
            data = b""
            while True:
                chunk = s.recv(65536)
                data += chunk
                if data.startswith(b"$"):
                    length = int(data[1:data.index(b"\r\n")])
                    if len(data) >= data.index(b"\r\n") + 2 + length + 2:
                        break
                elif data.endswith(b"\r\n") or not chunk:
                    break
            return data.decode(errors="replace").strip()

    def create(self, conn, key: str) -> str:
        conn.request("GET", f"/SET/{key}/1/NX/EX/{WINDOW_SECONDS}")
        response = conn.getresponse()
        body = response.read()
        if response.status == 200 and body == b'{"SET":[true,"OK"]}':
            return "created"
        if response.status == 200 and body == b'{"SET":null}':
            return "exists"
        return f"HTTP {response.status} {body[:60].decode(errors='replace')!r}"

    def wrk_args(self, nonce: str) -> list[str]:
        return [KEY_PREFIX, nonce, str(WINDOW_SECONDS)]

    def memory(self) -> tuple[int, int]:
        """(bytes in use, keys)."""
        info = self.redis_command("INFO", "memory")
        used = int(re.search(r"used_memory:(\d+)", info).group(1))
        keys = int(self.redis_command("DBSIZE").lstrip(":"))
        return used, keys

    def restart_backend(self) -> None:
        self.start_redis()


class Etcd(Store):
    name = "etcd (v3 JSON gateway)"
    wrk_script = WRK_ETCD
    backend_role = "etcd"

    def start(self) -> None:
        self.http_port = free_port()
        self.peer_port = free_port()
        self.start_etcd()
        wait_until(lambda: self.post("/v3/maintenance/status", {})[0] == 200, "etcd")
        started = time.perf_counter()
        status, body = self.post("/v3/lease/grant", {"TTL": 2 * WINDOW_SECONDS})
        self.lease_grant_us = (time.perf_counter() - started) * 1e6
        if status != 200:
            raise RuntimeError(f"etcd lease grant: {status} {body}")
        self.lease = body["ID"]
        wait_until(self.ready, "etcd txn")

    def start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.http_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.spawn("etcd", ["etcd", "--name", "bench", "--data-dir", str(self.workdir / "etcd-data"),
                            "--listen-client-urls", client, "--advertise-client-urls", client,
                            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                            "--initial-cluster", f"bench={peer}", "--log-level", "warn"])

    def post(self, path: str, payload: dict, conn=None) -> tuple[int, dict]:
        own = conn is None
        conn = conn or self.connection(timeout=2)
        try:
            conn.request("POST", path, json.dumps(payload), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            if own:
                conn.close()

    @staticmethod
    def txn(key: str, lease: str) -> dict:
        encoded = base64.b64encode(key.encode()).decode()
        return {"compare": [{"key": encoded, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"requestPut": {"key": encoded, "value": "MQ==", "lease": lease}}]}

    def create(self, conn, key: str) -> str:
        status, body = self.post("/v3/kv/txn", self.txn(key, self.lease), conn)
        if status == 200:
            return "created" if body.get("succeeded") else "exists"
        return f"HTTP {status} {str(body)[:60]!r}"

    def create_with_own_lease(self, conn, key: str) -> str:
        """The alternative to a shared lease: a lease per key (two round trips)."""
        status, body = self.post("/v3/lease/grant", {"TTL": WINDOW_SECONDS}, conn)
        if status != 200:
            return f"HTTP {status} (lease grant)"
        status, body = self.post("/v3/kv/txn", self.txn(key, body["ID"]), conn)
        if status == 200:
            return "created" if body.get("succeeded") else "exists"
        return f"HTTP {status} {str(body)[:60]!r}"

    def wrk_args(self, nonce: str) -> list[str]:
        return [KEY_PREFIX, nonce, self.lease]

    def memory(self) -> tuple[int, int]:
        """(database file bytes, keys under the prefix)."""
        _, status = self.post("/v3/maintenance/status", {})
        prefix = KEY_PREFIX.encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        _, counted = self.post("/v3/kv/range", {"key": base64.b64encode(prefix).decode(),
                                                "range_end": base64.b64encode(end).decode(), "count_only": True})
        return int(status["dbSize"]), int(counted.get("count", 0))

    def restart_backend(self) -> None:
        self.start_etcd()


def sequential(store: Store, ops: int) -> dict:
    conn = store.connection()
    for _ in range(200):  # warm-up
        store.create(conn, KEY_PREFIX + fingerprint())
    latencies, outcomes = [], {}
    create = store.create
    for _ in range(ops):
        key = KEY_PREFIX + fingerprint()
        started = time.perf_counter()
        outcome = create(conn, key)
        latencies.append((time.perf_counter() - started) * 1e6)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    conn.close()
    return {"p50_us": statistics.median(latencies), "p99_us": percentile(latencies, 0.99),
            "ops": ops, "outcomes": outcomes}


def sequential_own_lease(store: Etcd, ops: int) -> dict:
    conn = store.connection()
    latencies, outcomes = [], {}
    for _ in range(ops):
        started = time.perf_counter()
        outcome = store.create_with_own_lease(conn, KEY_PREFIX + fingerprint())
        latencies.append((time.perf_counter() - started) * 1e6)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    conn.close()
    return {"p50_us": statistics.median(latencies), "p99_us": percentile(latencies, 0.99), "outcomes": outcomes}


def throughput(store: Store, seconds: int, connections: int, load_cpus: str | None) -> dict:
    script = store.workdir / f"{store.backend_role}.lua"
    script.write_text(store.wrk_script)
    nonce = fingerprint()[:12]
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
               f"http://127.0.0.1:{store.http_port}", "--", *store.wrk_args(nonce)]
    if load_cpus is not None:
        command = ["taskset", "-c", load_cpus, *command]
    pids = store.pids()
    before = sum(cpu_ticks(pid) for pid in pids)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    after = sum(cpu_ticks(pid) for pid in pids)
    counted = re.search(r"outcomes created=(\d+) exists=(\d+) other=(\d+)", output).groups()
    outcomes = dict(zip(("created", "exists", "other"), map(int, counted)))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "requests": requests, "outcomes": outcomes,
            "store_cpu_us_per_op": (after - before) * 1e6 / CLOCK_TICKS / max(requests, 1)}


def second_create(store: Store) -> str:
    conn = store.connection()
    key = KEY_PREFIX + fingerprint()
    first, second = store.create(conn, key), store.create(conn, key)
    conn.close()
    return f"{first}, then {second}"


def race(store: Store, keys: int = 50, clients: int = 16) -> str:
    """`clients` threads create the same key at once, `keys` times: exactly one may win each."""
    connections = [store.connection() for _ in range(clients)]
    barrier = threading.Barrier(clients)
    results: list[list[str]] = [[] for _ in range(clients)]
    names = [KEY_PREFIX + fingerprint() for _ in range(keys)]

    def client(index: int) -> None:
        for name in names:
            barrier.wait()
            results[index].append(store.create(connections[index], name))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in connections:
        conn.close()
    bad = [k for k in range(keys) if sum(results[c][k] == "created" for c in range(clients)) != 1
           or any(results[c][k] not in ("created", "exists") for c in range(clients))]
    return f"{keys - len(bad)}/{keys} keys had exactly one winner of {clients}"


def attempt(store: Store, conn) -> tuple[str, float]:
    """One create with the filter's timeout: (outcome, milliseconds)."""
    started = time.perf_counter()
    try:
        outcome = store.create(conn, KEY_PREFIX + fingerprint())
    except socket.timeout:
        outcome = f"no answer within {CLIENT_TIMEOUT_S * 1000:.0f} ms"
    except (OSError, http.client.HTTPException) as error:
        outcome = type(error).__name__
    return outcome, (time.perf_counter() - started) * 1000


def when_slow(store: Store) -> str:
    """SIGSTOP the backend (Redis, etcd): what a request sees; then SIGCONT."""
    pid = store.processes[store.backend_role].pid
    conn = store.connection(timeout=CLIENT_TIMEOUT_S)
    store.create(conn, KEY_PREFIX + fingerprint())  # connected and warm
    os.kill(pid, signal.SIGSTOP)
    try:
        outcome, _ = attempt(store, conn)
    finally:
        os.kill(pid, signal.SIGCONT)
    conn.close()
    conn = store.connection(timeout=2)
    after, ms = attempt(store, conn)
    conn.close()
    return f"{outcome}; after SIGCONT a new request: {after} in {ms:.1f} ms"


def when_down(store: Store) -> str:
    """SIGKILL the backend: what a request on a live connection and on a new one
    sees; then restart it on the same port and time until a create succeeds."""
    process = store.processes[store.backend_role]
    conn = store.connection(timeout=CLIENT_TIMEOUT_S)
    key = KEY_PREFIX + fingerprint()
    store.create(conn, key)
    process.kill()
    process.wait()
    live, live_ms = attempt(store, conn)
    conn.close()
    fresh_conn = store.connection(timeout=CLIENT_TIMEOUT_S)
    fresh, fresh_ms = attempt(store, fresh_conn)
    fresh_conn.close()
    store.restart_backend()
    back = wait_until(store.ready, f"{store.name} after a restart")
    conn = store.connection()
    remembered = store.create(conn, key)
    conn.close()
    return (f"kept connection: {live} in {live_ms:.1f} ms; new connection: {fresh} in {fresh_ms:.1f} ms; "
            f"restarted, a create succeeds again {back * 1000:.0f} ms after the restart; a key created before the crash is then {'still known' if remembered == 'exists' else 'forgotten (' + remembered + ')'}")


def measure(store: Store, args) -> dict:
    result: dict = {"name": store.name}
    store.start()
    result["second_create"] = second_create(store)
    result["sequential"] = sequential(store, args.ops)
    if isinstance(store, Etcd):
        result["lease_grant_us"] = store.lease_grant_us
        result["own_lease"] = sequential_own_lease(store, max(args.ops // 5, 100))
    memory_before = store.memory()
    rss_before = sum(rss_kib(pid) for pid in store.pids())
    result["throughput"] = throughput(store, args.seconds, args.connections, args.load_cpus)
    memory_after = store.memory()
    rss_after = sum(rss_kib(pid) for pid in store.pids())
    added_keys = memory_after[1] - memory_before[1]
    result["memory"] = {"keys": added_keys,
                        "bytes_per_key": (memory_after[0] - memory_before[0]) / max(added_keys, 1),
                        "rss_kib": rss_after - rss_before}
    result["race"] = race(store)
    result["slow"] = when_slow(store)
    result["down"] = when_down(store)
    return result


def report(results: list[dict], args) -> str:
    lines = [
        f"Window {WINDOW_SECONDS} s; keys `{KEY_PREFIX}` + 22 base64url characters; "
        f"stores on CPU {args.store_cpus or '-'}, clients on CPU {args.load_cpus or '-'}; "
        f"latency over {args.ops} sequential creates on one keep-alive connection (Python http.client, "
        f"its own time included); throughput wrk -t1 -c{args.connections} for {args.seconds} s, "
        f"a fresh key per request.",
        "",
        "| store | p50 µs | p99 µs | creates/s (16 connections) | store CPU µs/create | memory per key | "
        "second create of a key | 16 clients racing on one key |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        s, t, m = r["sequential"], r["throughput"], r["memory"]
        unit = "bytes of used_memory" if r["name"].startswith("redis") else "bytes of db file"
        lines.append(
            f"| {r['name']} | {s['p50_us']:.0f} | {s['p99_us']:.0f} | {t['rps']:.0f} | "
            f"{t['store_cpu_us_per_op']:.1f} | {m['bytes_per_key']:.0f} {unit} "
            f"(processes' RSS +{m['rss_kib'] / 1024:.1f} MiB over the {m['keys']:,} keys of the run) | "
            f"{r['second_create']} | {r['race']} |")
        if "own_lease" in r:
            o = r["own_lease"]
            lines.append(f"| etcd, a lease per key instead (grant + txn) | {o['p50_us']:.0f} | {o['p99_us']:.0f} "
                         f"| | | | | |")
    lines += ["", "| store | store slow (backend SIGSTOPped) | store down (backend SIGKILLed) |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['slow']} | {r['down']} |")
    lines.append("")
    for r in results:
        unexpected = {k: v for k, v in r["sequential"]["outcomes"].items() if k != "created"}
        other = r["throughput"]["outcomes"]
        lines.append(f"{r['name']}: sequential outcomes other than created: {unexpected or 'none'}; "
                     f"wrk outcomes {other}.")
        if "lease_grant_us" in r:
            lines.append(f"{r['name']}: one lease grant (once per window per replica) took "
                         f"{r['lease_grant_us']:.0f} µs.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=5000, help="sequential creates per store")
    parser.add_argument("--seconds", type=int, default=5, help="throughput run per store")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=["webdis", "etcd"], action="append",
                        help="measure only this store (repeatable)")
    args = parser.parse_args()
    for binary in ("redis-server", "webdis", "etcd", "wrk"):
        if shutil.which(binary) is None:
            sys.exit(f"{binary} is missing (Debian: redis-server, webdis, etcd-server, wrk)")
    pinning = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    args.store_cpus, args.load_cpus = ("1", "0") if pinning else (None, None)
    if pinning:
        os.sched_setaffinity(0, {0})
    workdir = Path(tempfile.mkdtemp(prefix="cnf-guard-store-choice-"))
    results = []
    try:
        for kind, cls in (("webdis", Webdis), ("etcd", Etcd)):
            if args.only and kind not in args.only:
                continue
            store = cls(workdir / kind, args.store_cpus)
            store.workdir.mkdir()
            print(f"measuring {store.name}", file=sys.stderr)
            try:
                results.append(measure(store, args))
            finally:
                store.stop_all()
    except Exception:
        print(f"failed; logs kept in {workdir}", file=sys.stderr)
        raise
    print(report(results, args))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
