"""Benchmark: signed webhooks per second through verification and the durable inbox, beside a bare handler.

    python bench/ingest.py [--requests 20000] [--concurrency 32] [--warmup 1000] [--rounds 2]

Starts servers one after the other, each in its own process on loopback:

- ``raw``: an aiohttp handler that only reads the body and answers 200;
- ``inbox``: the service's `WebhookReceiver` (default scheme, HMAC-SHA256 verified in constant time,
  strict parsing, replay window) committing every event to SQLite (WAL, synchronous=FULL, group commit)
  before its 200: the service as shipped (JSON logs at INFO, written to /dev/null);
- ``normal``: the same with `PRAGMA synchronous=NORMAL`, for comparison only: a commit then survives a
  kill -9 but not a power loss, and the difference is the fsync per group commit.

The same load generator (this process: aiohttp, `--concurrency` connections, pre-signed distinct events)
drives them all in one run. The load generator shares the machine with the server, so throughput moves
with whatever else runs: ``raw`` and ``inbox`` are therefore measured in `--rounds` interleaved rounds
(raw, inbox, then inbox, raw, ...: a drift hits both alike), each round's ratio inbox/raw is printed, and
the verdict is on their median (target >= 0.7) with the worst round beside it, so a regression still shows.
Each server's own CPU time per request (from /proc, Linux) is printed too: far less noisy than requests/s,
it is what a change to the server's code moves. ``normal`` runs once, after the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from service.adapters.logs import configure_logging
from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.webhook_http import WEBHOOK_PATH, WebhookReceiver, add_webhook_routes
from service.core.clock import SystemClock
from service.core.signatures import WebhookVerifier, sign_wiseflow

SECRET = "bench-webhook-secret"  # noqa: S105 - a fixed secret shared by this bench's two sides


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    failures: int
    cpu_seconds: float | None = None  # the server process's user + system CPU while measured

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


# --- the two servers (run with --serve in a child process) ---------------------------------------------


async def _raw(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def serve(kind: str, port: int, database: str) -> None:
    """Run one server until SIGTERM, logging as the service ships (JSON at INFO; to /dev/null here)."""
    configure_logging("INFO", open(os.devnull, "w"))  # noqa: SIM115 - open for the process's life
    app = web.Application()
    if kind == "raw":
        app.router.add_post(WEBHOOK_PATH, _raw)
    else:

        async def inbox(app: web.Application) -> object:
            store = await Store.open(database)
            if kind == "normal":
                await store.db.execute("PRAGMA synchronous=NORMAL")
            verifier = WebhookVerifier("wiseflow", (SECRET,), tolerance=300)
            add_webhook_routes(app, WebhookReceiver(verifier, Inbox(store), SystemClock()))
            yield
            await store.close()

        app.cleanup_ctx.append(inbox)  # type: ignore[arg-type]
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the load generator -------------------------------------------------------------------------------


def signed_requests(count: int, first_sequence: int) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct, fresh, signed FINAL_GRADE events (signed before timing starts)."""
    now = int(time.time())
    out = []
    for i in range(count):
        body = orjson.dumps(
            {
                "id": str(uuid.uuid4()),
                "sequence": first_sequence + i,
                "event": "FINAL_GRADE",
                "timestamp": now,
                "data": {"flowId": 1000 + i % 50, "participantId": i},
            }
        )
        out.append(
            (body, {"X-Wiseflow-Signature": sign_wiseflow(SECRET, body), "Content-Type": "application/json"})
        )
    return out


async def drive(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> Result:
    """Send every request over `concurrency` keep-alive connections; time each one."""
    latencies: list[float] = []
    failures = 0
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    failures += response.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result("", len(requests), elapsed, latencies, failures)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads), or None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def measure(kind: str, args: argparse.Namespace, database: str) -> Result:
    """Start one server process, warm it up, measure it, stop it."""
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--database", database]
    child = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # noqa: S603
    try:
        _wait_listening(port)
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        asyncio.run(drive(url, signed_requests(args.warmup, 1), args.concurrency))
        load = signed_requests(args.requests, 10**6)
        cpu_before = _cpu_seconds(child.pid)
        result = asyncio.run(drive(url, load, args.concurrency))
        cpu_after = _cpu_seconds(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Result(kind, result.requests, result.seconds, result.latencies, result.failures, cpu)


def interleaved(args: argparse.Namespace, tmp: str) -> list[tuple[Result, Result]]:
    """`args.rounds` pairs (raw, inbox), alternating which goes first; each inbox on a fresh database."""
    pairs = []
    for n in range(args.rounds):
        database = str(Path(tmp) / f"inbox-{n}.sqlite3")
        if n % 2 == 0:
            raw = measure("raw", args, database)
            inbox = measure("inbox", args, database)
        else:
            inbox = measure("inbox", args, database)
            raw = measure("raw", args, database)
        with sqlite3.connect(database) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        if stored != args.requests + args.warmup:
            print(f"round {n + 1}: {stored} inbox rows committed, expected {args.requests + args.warmup}")
        pairs.append((raw, inbox))
    return pairs


def report(args: argparse.Namespace, pairs: list[tuple[Result, Result]], normal: Result) -> None:
    """Print every run, the ratio of each round, and the verdict on their median."""
    print(f"{args.requests} signed webhooks, {args.concurrency} concurrent connections, loopback")
    print(
        f"{'server':<8} {'round':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} {'cpu us/req':>10}"
    )
    runs = [(n + 1, r) for n, pair in enumerate(pairs) for r in pair] + [(0, normal)]
    for n, r in runs:
        cpu = "-" if r.cpu_seconds is None else f"{r.cpu_seconds / r.requests * 1e6:.0f}"
        print(
            f"{r.name:<8} {n or '-':>5} {r.rate:>9.0f} {r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} "
            f"{r.failures:>8} {cpu:>10}"
        )
    ratios = [inbox.rate / raw.rate for raw, inbox in pairs]
    median = statistics.median(ratios)
    print(f"ratio inbox/raw by round: {', '.join(f'{r:.2f}' for r in ratios)}; worst {min(ratios):.2f}")
    verdict = "" if median >= 0.7 else "  BELOW TARGET"
    print(f"ratio inbox/raw (median of {len(ratios)}): {median:.2f} (target >= 0.70){verdict}")
    raw_rate = statistics.median(raw.rate for raw, _ in pairs)
    print(f"ratio normal/raw: {normal.rate / raw_rate:.2f} (synchronous=NORMAL, comparison only)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved raw/inbox pairs (median ratio)")
    parser.add_argument("--serve", choices=("raw", "inbox", "normal"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.database)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pairs = interleaved(args, tmp)
        normal = measure("normal", args, str(Path(tmp) / "normal.sqlite3"))
    report(args, pairs, normal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
