"""Benchmark: signed webhooks into `wiseflow-sync run` as shipped, beside a bare aiohttp handler, with wrk.

    python bench/ingest.py [--rounds 3] [--duration 8] [--connections 32] [--burst 20000] [--quick]

What runs, each in its own process on loopback:

- the simulator (`wiseflow-sync simulate`, 50 flows): the WISEflow the service's inbox worker calls;
- `wiseflow-sync run` as shipped: JSON logs at INFO (to a file), tracing on with the default sampler
  (`parentbased_always_on`: every webhook request gets its span), the default rate budget, the inbox
  worker refreshing flows while events arrive, synchronous=FULL and a commit before every 200;
- ``raw``: a bare aiohttp app whose handler only reads the body and answers 200 (the baseline).

The load is `wrk` (compiled; 1 thread, `--connections` keep-alive connections), its Lua script posting
distinct pre-signed FINAL_GRADE events for flows that exist. Both servers get the same wrk in interleaved
rounds (raw, run; then run, raw; ...), so a drift of the shared 2-core machine hits both alike. Each
round prints requests/s, their ratio, p50/p99 latency, answers that were not 2xx (a server that answers
503 fast is not fast) and each server's CPU microseconds per request (/proc utime + stime). The verdict
is on the median round. Before each run round the worker has finished the previous round's events.

Then:

- a profile round: `py-spy record --nonblocking` (Python frames only, the process is never paused) of
  the service under the same load, summarised as the top functions by own time and the share per area;
- the drain figure: the service is stopped, a burst of `--burst` FINAL_GRADE events over 50 flows is
  stored in its inbox, and it is started again: how long from the start of its loops (its
  `service.started` log line) until the worker has processed every one, and how many WISEflow calls it
  spent (from the simulator's journal; token requests not counted). Coalescing per flow is what keeps
  that near one refresh per flow; the burst must drain faster than it arrived at the measured rate.

`--json PATH` writes the headline figures for `bench/all.py` (`make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import loadtools as lt
import orjson
from aiohttp import web

from service.core.signatures import sign_wiseflow

SECRET = "bench-webhook-secret"  # noqa: S105 - a fixed secret shared by this bench's sides
WEBHOOK_PATH = "/webhooks/wiseflow"
FLOWS = 50
FIRST_FLOW_ID = 1001  # the simulator's first flow id
PARTICIPANTS = 20
# Events written per run round: more than the service can take in `duration` s, so none repeats.
EVENTS_PER_SECOND_CAP = 15_000
TARGET_RATIO = 0.7
TARGET_P99_MS = 10.0


@dataclass
class Round:
    """One interleaved round: the same wrk against each server."""

    raw: lt.WrkResult
    run: lt.WrkResult
    raw_cpu: float
    run_cpu: float
    run_split: lt.CpuSplit  # where the service's CPU went: event loop thread vs the others, user vs kernel
    backlog_s: float  # after wrk stopped, seconds until the worker had processed the round's events

    @property
    def ratio(self) -> float:
        return self.run.rate / self.raw.rate


@dataclass
class Servers:
    """The processes of one benchmark run and where they listen."""

    folder: Path
    simulator: subprocess.Popen[bytes]
    api_url: str
    raw: subprocess.Popen[bytes]
    raw_port: int
    run: subprocess.Popen[bytes] | None = None
    run_port: int = 0
    database: Path = field(default_factory=Path)
    next_sequence: int = 1


# --- the bare handler (run with --serve raw in a child process) ------------------------------------------


async def _raw(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def serve_raw(port: int) -> None:
    """The baseline: a bare aiohttp app that reads the body and answers 200, until SIGTERM."""
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, _raw)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- events ---------------------------------------------------------------------------------------------


def event_body(sequence: int, now: int) -> bytes:
    """One FINAL_GRADE event as WISEflow sends it, for a flow and participant that exist."""
    flow = FIRST_FLOW_ID + sequence % FLOWS
    participant = flow * 100_000 + sequence % PARTICIPANTS + 1
    doc = {
        "id": str(uuid.uuid4()),
        "sequence": sequence,
        "event": "FINAL_GRADE",
        "timestamp": now,
        "data": {"flowId": flow, "participantId": participant},
    }
    return orjson.dumps(doc)


def write_events(path: Path, first: int, count: int) -> None:
    """`count` distinct signed events, one "<signature> <body>" line each, for wrk's script."""
    now = int(time.time())
    with path.open("wb") as out:
        for sequence in range(first, first + count):
            body = event_body(sequence, now)
            out.write(sign_wiseflow(SECRET, body).encode() + b" " + body + b"\n")


# --- processes ------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_", "LOG_"))}
    return {**keep, "PYTHONPATH": str(lt.ROOT), **extra}


def start_simulator(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`wiseflow-sync simulate` with 50 flows on a free port; returns it and its /v1 URL."""
    port = lt.free_port()
    command = [sys.executable, "-m", "service", "simulate", "--port", str(port), "--seed", "7"]
    command += ["--flows", str(FLOWS), "--participants", str(PARTICIPANTS)]
    env = _env(LOG_LEVEL="WARNING", WISEFLOW_WEBHOOK_SECRET=SECRET)
    log = (folder / "simulator.log").open("wb")
    process = subprocess.Popen(command, cwd=lt.ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    lt.wait_listening(port, process)
    return process, f"http://127.0.0.1:{port}/v1"


def start_run(servers: Servers) -> subprocess.Popen[bytes]:
    """`wiseflow-sync run` as shipped (JSON logs at INFO to a file, default sampler) on the simulator."""
    servers.run_port = lt.free_port()
    env = _env(
        WISEFLOW_API_URL=servers.api_url,
        WISEFLOW_CLIENT_ID="demo-client",
        WISEFLOW_CLIENT_SECRET="demo-secret",  # noqa: S106 - the simulator's public demo credentials
        WISEFLOW_WEBHOOK_SECRET=SECRET,
        SYNC_DATABASE=str(servers.database),
        SYNC_HTTP_HOST="127.0.0.1",
        SYNC_HTTP_PORT=str(servers.run_port),
        LOG_LEVEL="INFO",
    )
    log = (servers.folder / "run.log").open("ab")
    command = [sys.executable, "-m", "service", "run"]
    process = subprocess.Popen(command, cwd=lt.ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    lt.wait_listening(servers.run_port, process)
    return process


def start_raw() -> tuple[subprocess.Popen[bytes], int]:
    """The bare handler in its own process."""
    port = lt.free_port()
    command = [sys.executable, __file__, "--serve", "raw", "--port", str(port)]
    process = subprocess.Popen(command, env=_env())  # noqa: S603 - our own script
    lt.wait_listening(port, process)
    return process, port


def pending(database: Path) -> int:
    """Inbox events still waiting for the worker."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute("SELECT COUNT(*) FROM inbox WHERE status = 'pending'").fetchone()[0])


def wait_drained(database: Path, timeout: float = 300.0) -> float:
    """Seconds until no inbox event is pending (the worker caught up)."""
    started = time.monotonic()
    while pending(database) > 0:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the inbox did not drain within {timeout:g} s")
        time.sleep(0.05)
    return time.monotonic() - started


def wait_first_sync(port: int, timeout: float = 120.0) -> None:
    """Wait until the service's first sync run ended (its WISEflow calls then stop competing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as answer:  # noqa: S310
            if json.load(answer)["runs"] >= 1:
                return
        time.sleep(0.2)
    raise RuntimeError("the service's first sync run did not end")


# --- the measurements ------------------------------------------------------------------------------------


def prepare(servers: Servers, target: str, args: argparse.Namespace) -> Path:
    """The events file of the next wrk run: fresh, unseen events for the service; any for the bare app."""
    events = servers.folder / "events.txt"
    if target == "run":
        count = int(EVENTS_PER_SECOND_CAP * args.duration)
        write_events(events, servers.next_sequence, count)
        servers.next_sequence += count
    elif not events.exists():
        write_events(events, 1, int(EVENTS_PER_SECOND_CAP * args.duration))
    return events


def load(
    servers: Servers, target: str, args: argparse.Namespace, wrk: str, lua: Path, events: Path
) -> tuple[lt.WrkResult, float, lt.CpuSplit]:
    """One wrk run against `target` ("raw" or "run"): its figures, the server's CPU seconds and their split."""
    process, port = (servers.run, servers.run_port) if target == "run" else (servers.raw, servers.raw_port)
    assert process is not None
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    before, split = lt.cpu_seconds(process.pid), lt.cpu_split(process.pid)
    result = lt.run_wrk(wrk, lua, events, url, seconds=args.duration, connections=args.connections)
    return result, lt.cpu_seconds(process.pid) - before, lt.cpu_split(process.pid) - split


def rounds(servers: Servers, args: argparse.Namespace, wrk: str, lua: Path) -> list[Round]:
    """`args.rounds` interleaved rounds; the worker has drained the last round's events before the next."""
    out = []
    for n in range(args.rounds):
        order = ("raw", "run") if n % 2 == 0 else ("run", "raw")
        got: dict[str, tuple[lt.WrkResult, float, lt.CpuSplit]] = {}
        backlog = 0.0
        for target in order:
            got[target] = load(servers, target, args, wrk, lua, prepare(servers, target, args))
            if target == "run":
                backlog = wait_drained(servers.database)
        r = Round(got["raw"][0], got["run"][0], got["raw"][1], got["run"][1], got["run"][2], backlog)
        print(
            f"  round {n + 1}: raw {r.raw.rate:,.0f}/s, run {r.run.rate:,.0f}/s, ratio {r.ratio:.2f}, "
            f"run p99 {r.run.p99_ms:.1f} ms, run non-2xx {r.run.non_2xx}",
            flush=True,
        )
        out.append(r)
    return out


def profile(servers: Servers, args: argparse.Namespace, wrk: str, lua: Path) -> str:
    """A py-spy profile of the service under the same load, as printable lines."""
    py_spy = lt.find_py_spy()
    if py_spy is None:
        return f"  (no profile: py-spy not found; {lt.PY_SPY_INSTALL})"
    assert servers.run is not None
    output = servers.folder / "profile.txt"
    events = prepare(servers, "run", args)
    spy = lt.start_profile(py_spy, servers.run.pid, args.duration, output)
    time.sleep(0.3)  # py-spy attaches; wrk (a little longer than the recording) runs past its end
    result, _, _ = load(servers, "run", args, wrk, lua, events)
    err, _ = spy.communicate(timeout=60)
    wait_drained(servers.database)
    said = err.decode(errors="replace").strip()
    if spy.returncode != 0 or not output.exists():
        return f"  (no profile: py-spy failed: {said[-300:]})"
    samples, top, areas = lt.own_time(output.read_text())
    summary = next((x.split("py-spy> ", 1)[-1] for x in said.splitlines() if "Samples:" in x), "")
    lines = [
        f"  py-spy of the service under the same load ({result.rate:,.0f} req/s; {summary.strip()}), "
        f"{samples:,} busy samples; share by own time:"
    ]
    lines += [f"    {share:6.1%}  {name}" for name, share in top]
    lines.append("  by area: " + ", ".join(f"{name} {share:.0%}" for name, share in areas))
    return "\n".join(lines)


async def _store_burst(database: Path, first: int, count: int) -> None:
    """`count` FINAL_GRADE events committed to the inbox through the service's own ingest path."""
    from service.adapters.store import Store
    from service.adapters.store.inbox import Inbox
    from service.core.webhook_events import parse_event

    store = await Store.open(database)
    try:
        inbox = Inbox(store)
        now = time.time()
        for start in range(first, first + count, 1000):
            bodies = [event_body(s, int(now)) for s in range(start, min(first + count, start + 1000))]
            await asyncio.gather(*(inbox.record(parse_event(b), b, "pending", now) for b in bodies))
    finally:
        await store.close()


@dataclass(frozen=True)
class Drain:
    """How the worker dealt with a stored burst."""

    events: int
    seconds: float
    calls: int  # WISEflow API calls while draining (token requests not counted)
    refreshes: int  # of which flow refreshes the events asked for (GET .../assessments)


def drain(servers: Servers, count: int) -> Drain:
    """Stop the service, store a burst, start it again: time to process it all and the calls spent."""
    assert servers.run is not None
    lt.stop(servers.run)
    first = servers.next_sequence
    servers.next_sequence += count
    asyncio.run(_store_burst(servers.database, first, count))
    _sim("DELETE", servers.api_url, "/_sim/journal")
    servers.run = start_run(servers)
    started = started_at(servers.folder / "run.log")
    wait_drained(servers.database)
    with sqlite3.connect(f"file:{servers.database}?mode=ro", uri=True) as db:
        last = db.execute("SELECT MAX(processed_at) FROM inbox WHERE sequence >= ?", (first,)).fetchone()[0]
    journal = _sim("GET", servers.api_url, "/_sim/journal")["requests"]  # cleared before the start
    calls = [r for r in journal if not r["path"].endswith("/oauth2/token")]
    refreshes = [r for r in calls if r["path"].endswith("/assessments")]
    return Drain(count, float(last) - started, len(calls), len(refreshes))


def started_at(log: Path) -> float:
    """When the service last started its loops: the time of its last `service.started` log line."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if '"service.started"' in x]
    return datetime.fromisoformat(lines[-1]["time"]).timestamp()


def _sim(method: str, api_url: str, path: str) -> dict[str, list[dict[str, str]]]:
    root = api_url.removesuffix("/v1")
    request = urllib.request.Request(root + path, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.load(answer)  # type: ignore[no-any-return]


# --- the report -----------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace, results: list[Round], profile_text: str, burst: Drain, disk: tuple[float, float]
) -> list[list[str]]:
    """Print every round, the medians and the verdicts; return the headline rows for `--json`."""
    print(
        f"\nwebhook ingest: wrk, 1 thread, {args.connections} keep-alive connections, {args.duration:g} s a "
        f"run, {len(results)} interleaved rounds, loopback, {os.cpu_count()} cores; the database's disk: "
        f"fsync p50 {disk[0]:.1f} ms, p90 {disk[1]:.1f} ms (one per group commit, synchronous=FULL)"
    )
    print(
        f"{'round':>5} {'server':<22} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} "
        f"{'cpu us/req':>10}"
    )
    for n, r in enumerate(results, 1):
        for name, res, cpu, ratio in (
            ("bare aiohttp", r.raw, r.raw_cpu, 1.0),
            ("wiseflow-sync run", r.run, r.run_cpu, r.ratio),
        ):
            errors = res.non_2xx + res.socket_errors
            print(
                f"{n:>5} {name:<22} {res.rate:>8,.0f} {ratio:>6.2f} {res.p50_ms:>7.2f} {res.p99_ms:>7.2f} "
                f"{errors:>8} {cpu / res.requests * 1e6:>10.0f}"
            )
    median = sorted(results, key=lambda r: r.ratio)[len(results) // 2]
    ratio_ok = median.ratio >= TARGET_RATIO
    p99_ok = median.run.p99_ms < TARGET_P99_MS
    errors = sum(r.run.non_2xx + r.run.socket_errors for r in results)
    print(
        f"median round: ratio {median.ratio:.2f} (target >= {TARGET_RATIO}: {'ok' if ratio_ok else 'MISSED'}), "
        f"p99 {median.run.p99_ms:.1f} ms (target < {TARGET_P99_MS:g}: {'ok' if p99_ok else 'MISSED'}), "
        f"worst ratio {min(r.ratio for r in results):.2f}; non-2xx or errors of the service: {errors}"
    )
    print(f"service CPU per request, median round: {median.run_split.per_request_us(median.run.requests)}")
    backlog = statistics.median(r.backlog_s for r in results)
    print(f"after each run round the worker needed {backlog:.1f} s (median) to finish the round's events")
    print(profile_text)
    arrival = burst.events / statistics.median(r.run.rate for r in results)
    drain_ok = burst.seconds < arrival
    print(
        f"drain: {burst.events:,} stored FINAL_GRADE events over {FLOWS} flows processed in "
        f"{burst.seconds:.1f} s (they arrive in {arrival:.1f} s at the measured rate: {_ok(drain_ok)}); "
        f"{burst.calls} WISEflow calls, {burst.refreshes} of them grade refreshes "
        f"({burst.refreshes / FLOWS:.1f} per flow, {burst.refreshes / burst.events:.4f} per event)"
    )
    cpu = statistics.median(r.run_cpu / r.run.requests * 1e6 for r in results)
    return [
        ["ingest", "ratio run/bare (median round)", f"{median.ratio:.2f}", f">= {TARGET_RATIO}", _ok(ratio_ok)],
        [
            "ingest",
            "p99 at 32 connections",
            f"{median.run.p99_ms:.1f} ms",
            f"< {TARGET_P99_MS:g} ms",
            _ok(p99_ok),
        ],
        ["ingest", "service CPU per webhook", f"{cpu:.0f} us", "-", "-"],
        ["ingest", "disk fsync p50 / p90 (context)", f"{disk[0]:.1f} / {disk[1]:.1f} ms", "-", "-"],
        ["ingest", "non-2xx answers under load", str(errors), "0", _ok(errors == 0)],
        [
            "ingest",
            f"drain of {burst.events:,} events",
            f"{burst.seconds:.1f} s",
            f"< {arrival:.1f} s",
            _ok(drain_ok),
        ],
        ["ingest", "WISEflow refreshes per flow (drain)", f"{burst.refreshes / FLOWS:.1f}", "per flow", "-"],
    ]


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run (default 8)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--burst", type=int, default=20_000, help="events of the drain figure (default 20000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 2 s, a burst of 5000")
    parser.add_argument("--json", type=Path, help="write the headline figures here (for bench/all.py)")
    parser.add_argument("--serve", choices=("raw",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_raw(args.port)
        return 0
    if args.quick:
        args.rounds, args.duration, args.burst = 1, 2.0, 5000
    wrk = lt.find_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulator, api_url = start_simulator(folder)
        raw, raw_port = start_raw()
        servers = Servers(folder, simulator, api_url, raw, raw_port, database=folder / "service.sqlite3")
        try:
            servers.run = start_run(servers)
            wait_first_sync(servers.run_port)
            lua = lt.write_lua(folder)
            lt.run_wrk(
                wrk,
                lua,
                _warm(servers),
                f"http://127.0.0.1:{servers.run_port}{WEBHOOK_PATH}",
                seconds=1,
                connections=args.connections,
            )
            wait_drained(servers.database)
            disk = lt.fsync_ms(folder)
            results = rounds(servers, args, wrk, lua)
            profile_text = profile(servers, args, wrk, lua)
            burst = drain(servers, args.burst)
        finally:
            for process in (servers.run, raw, simulator):
                if process is not None:
                    lt.stop(process)
    rows = report(args, results, profile_text, burst, disk)
    if args.json:
        args.json.write_text(json.dumps(rows))
    return 0


def _warm(servers: Servers) -> Path:
    """A warm-up file of events (the first requests pay for imports and caches)."""
    path = servers.folder / "warm.txt"
    write_events(path, servers.next_sequence, 20_000)
    servers.next_sequence += 20_000
    return path


if __name__ == "__main__":
    raise SystemExit(main())
