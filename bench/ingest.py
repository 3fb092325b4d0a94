"""Benchmark: signed webhooks into `wiseflow-sync run` as shipped, beside its two yardsticks, with wrk.

    python bench/ingest.py [--rounds 5] [--duration 8] [--connections 32] [--burst 20000] [--quick]

What runs, each in its own process on loopback:

- the simulator (`wiseflow-sync simulate`, 50 flows): the WISEflow the service's inbox worker calls;
- an OTLP sink that answers every span export 200 (the collector of a real deployment);
- ``service``: `wiseflow-sync run` as shipped: JSON logs at INFO (to a file), tracing with the default
  sampler exporting to the sink, the default rate budget, the inbox worker refreshing flows while events
  arrive, synchronous=FULL and a commit before every 200;
- ``limit``: `bench/durable.py`, the minimal durable receiver: read, verify with the same verifier, parse,
  group-commit (one writer thread, WAL, synchronous=FULL), answer after the commit, one span per request
  under the same sampler and exporter. What the service must do, done with nothing else: its ceiling;
- ``bare``: a bare aiohttp app whose handler only reads the body and answers 200.

The load is `wrk` (compiled; 1 thread, `--connections` keep-alive connections), its Lua script posting
distinct pre-signed FINAL_GRADE events for flows that exist. All three get the same wrk in interleaved
rounds (the order rotates each round), so a drift of the shared machine hits them alike. Each round prints
requests/s, the ratios to both yardsticks, p50/p99 latency, answers that were not 2xx (a server that
answers 503 fast is not fast) and CPU microseconds per request (/proc utime + stime, every thread). The
verdict is on the median round of five: on a shared 2-vCPU machine a round swings by a tenth or more, and
the median of three let one slow spell decide. Before each service round the worker has finished the
previous events.

Then, unless `--quick`:

- tracing priced: the service under each standard sampler and the default (three runs each, the median
  kept), CPU per request and rate;
- open loop: p50/p99 at fixed rates (200, 1,000, 3,000 requests/s) for the service and the limit, with
  wrk paced by its Lua script (see `loadtools._PACING` for what that can and cannot hold);
- a profile round: `py-spy record --nonblocking` of the service under the closed-loop load;
- the drain figure: the service is stopped, a burst of `--burst` FINAL_GRADE events over 50 flows is
  stored in its inbox, and it is started again: how long from the start of its loops until the worker
  has processed every one, and how many WISEflow calls it spent.

`--json PATH` writes the headline figures for `bench/all.py` (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ingest_drain as dr
import ingest_report as rp
import loadtools as lt
import orjson
from aiohttp import web

from service.core.signatures import sign_wiseflow

SECRET = "bench-webhook-secret"  # noqa: S105 - a fixed secret shared by this bench's sides
WEBHOOK_PATH = "/webhooks/wiseflow"
FLOWS = 50
FIRST_FLOW_ID = 1001  # the simulator's first flow id
PARTICIPANTS = 20
# Events written per durable run: more than a server can take in `duration` s, so none repeats.
EVENTS_PER_SECOND_CAP = 15_000
TARGETS = ("bare", "limit", "service")
OPEN_LOOP_RATES = (200, 1000, 3000)
# (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) priced; the service's receipts have no parent, so each
# parentbased_* sampler prices as the one it wraps.
SAMPLERS = (("always_off", None), ("traceidratio", "0.1"), ("always_on", None), (None, None))


@dataclass
class Target:
    """One server under load: its process, port, database, and the next unused event sequence."""

    name: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    database: Path | None = None
    next_sequence: int = 1


@dataclass
class Bench:
    """The processes of one benchmark run."""

    folder: Path
    api_url: str = ""
    sink_url: str = ""
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)
    sampler: tuple[str | None, str | None] = (None, None)  # the service's OTEL_TRACES_SAMPLER and _ARG

    def stop_all(self) -> None:
        """Stop every process of the run: the servers measured, then the simulator and the sink."""
        for target in self.targets.values():
            if target.process is not None:
                lt.stop(target.process)
        for process in self.others:
            lt.stop(process)


# --- the bare handler and the OTLP sink (run with --serve in a child process) ---------------------------


async def _raw(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def serve(kind: str, port: int) -> None:
    """`bare`: reads the body and answers 200; `sink`: answers every OTLP export 200 (until SIGTERM)."""
    app = web.Application()
    app.router.add_post("/v1/traces" if kind == "sink" else WEBHOOK_PATH, _raw)
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


def events_file(bench: Bench, target: Target, count: int) -> Path:
    """`count` fresh signed events for `target`, one "<signature> <body>" line each, for wrk's script."""
    path = bench.folder / f"events-{target.name}.txt"
    if target.database is None and path.exists():  # the bare handler stores nothing: any events do
        return path
    now = int(time.time())
    with path.open("wb") as out:
        for sequence in range(target.next_sequence, target.next_sequence + count):
            body = event_body(sequence, now)
            out.write(sign_wiseflow(SECRET, body).encode() + b" " + body + b"\n")
    target.next_sequence += count
    return path


# --- processes ------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_", "LOG_"))}
    return {**keep, "PYTHONPATH": str(lt.ROOT), **extra}


def _spawn(command: list[str], port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=lt.ROOT, env=_env(**env), stdout=out, stderr=out)  # noqa: S603
    lt.wait_listening(port, process)
    return process


def start_others(bench: Bench) -> None:
    """The simulator (50 flows), the OTLP sink, the bare handler and the limit."""
    port = lt.free_port()
    command = [sys.executable, "-m", "service", "simulate", "--port", str(port), "--seed", "7"]
    command += ["--flows", str(FLOWS), "--participants", str(PARTICIPANTS)]
    log = bench.folder / "others.log"
    bench.others.append(_spawn(command, port, log, LOG_LEVEL="WARNING", WISEFLOW_WEBHOOK_SECRET=SECRET))
    bench.api_url = f"http://127.0.0.1:{port}/v1"
    for kind in ("sink", "bare"):
        port = lt.free_port()
        process = _spawn([sys.executable, __file__, "--serve", kind, "--port", str(port)], port, log)
        if kind == "sink":
            bench.sink_url, _ = f"http://127.0.0.1:{port}", bench.others.append(process)
        else:
            bench.targets["bare"] = Target("bare", process, port)
    limit = Target("limit", port=lt.free_port(), database=bench.folder / "limit.sqlite3")
    command = [sys.executable, str(Path(__file__).with_name("durable.py")), "--port", str(limit.port)]
    command += ["--database", str(limit.database), "--otlp", bench.sink_url]
    limit.process = _spawn(command, limit.port, log, **_sampling(bench))
    bench.targets["limit"] = limit


def _sampling(bench: Bench) -> dict[str, str]:
    """OTEL_TRACES_SAMPLER and _ARG for the service (and the limit), when not the default."""
    sampler, arg = bench.sampler
    extra = {} if sampler is None else {"OTEL_TRACES_SAMPLER": sampler}
    return extra | ({} if arg is None else {"OTEL_TRACES_SAMPLER_ARG": arg})


def start_service(bench: Bench) -> None:
    """`wiseflow-sync run` as shipped (JSON logs at INFO to a file) on the simulator, spans to the sink."""
    target = bench.targets.setdefault("service", Target("service", database=bench.folder / "service.sqlite3"))
    target.port = lt.free_port()
    target.process = _spawn(
        [sys.executable, "-m", "service", "run"],
        target.port,
        bench.folder / "run.log",
        WISEFLOW_API_URL=bench.api_url,
        WISEFLOW_CLIENT_ID="demo-client",
        WISEFLOW_CLIENT_SECRET="demo-secret",  # noqa: S106 - the simulator's public demo credentials
        WISEFLOW_WEBHOOK_SECRET=SECRET,
        SYNC_DATABASE=str(target.database),
        SYNC_HTTP_HOST="127.0.0.1",
        SYNC_HTTP_PORT=str(target.port),
        OTEL_EXPORTER_OTLP_ENDPOINT=bench.sink_url,
        LOG_LEVEL="INFO",
        **_sampling(bench),
    )


def stop_service(bench: Bench) -> None:
    """SIGTERM the service and wait for it."""
    process = bench.targets["service"].process
    if process is not None:
        lt.stop(process)


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


def load(
    bench: Bench,
    name: str,
    args: argparse.Namespace,
    lua: Path,
    *,
    rate: int | None = None,
    events: Path | None = None,
) -> rp.Measured:
    """One wrk run against target `name` (with `events`, else fresh ones): wrk's figures, the server's CPU."""
    target = bench.targets[name]
    assert target.process is not None
    if events is None:
        events = events_file(bench, target, int(EVENTS_PER_SECOND_CAP * args.duration))
    connections = args.connections if rate is None else max(4, rate // 50)
    url = f"http://127.0.0.1:{target.port}{WEBHOOK_PATH}"
    pid = target.process.pid
    before, split = lt.cpu_seconds(pid), lt.cpu_split(pid)
    result = lt.run_wrk(args.wrk, lua, events, url, seconds=args.duration, connections=connections)
    measured = rp.Measured(result, lt.cpu_seconds(pid) - before, lt.cpu_split(pid) - split)
    if name == "service":
        assert target.database is not None
        dr.wait_drained(target.database)  # the next run starts with the worker idle
    return measured


def rounds(bench: Bench, args: argparse.Namespace, lua: Path) -> list[dict[str, rp.Measured]]:
    """`args.rounds` rounds of every target, the order rotating each round."""
    out = []
    for n in range(args.rounds):
        order = TARGETS[n % 3 :] + TARGETS[: n % 3]
        got = {name: load(bench, name, args, lua) for name in order}
        print(rp.round_line(n + 1, got), flush=True)
        out.append(got)
    return out


def price_samplers(bench: Bench, args: argparse.Namespace, lua: Path) -> list[tuple[str, rp.Measured]]:
    """The service under each sampler of `SAMPLERS`: three runs each (the order reversed the second time, the
    service restarted before each), the median one kept: a run swings by a tenth on a shared machine, more
    than tracing at the default costs, and a fast or slow moment of the machine should not price."""
    runs: dict[str, list[rp.Measured]] = {}
    for sampler, arg in (*SAMPLERS, *reversed(SAMPLERS), *SAMPLERS):
        stop_service(bench)
        bench.sampler = (sampler, arg)
        start_service(bench)
        load(bench, "service", argparse.Namespace(**{**vars(args), "duration": 1.0}), lua)  # warm-up
        label = "default" if sampler is None else sampler + ("" if arg is None else f" {arg}")
        runs.setdefault(label, []).append(load(bench, "service", args, lua))
        print(f"  sampler {label}: {rp.describe(runs[label][-1])}", flush=True)
    stop_service(bench)  # the rest of the benchmark measures the service as shipped: the default sampler
    bench.sampler = (None, None)
    start_service(bench)
    return [(label, _median_run(measured)) for label, measured in runs.items()]


def _median_run(runs: list[rp.Measured]) -> rp.Measured:
    """The run of median throughput."""
    return sorted(runs, key=lambda m: m.wrk.rate)[len(runs) // 2]


def open_loop(bench: Bench, args: argparse.Namespace) -> list[tuple[int, str, rp.Measured]]:
    """p50/p99 of the service and the limit at each fixed rate of `OPEN_LOOP_RATES`."""
    out = []
    for rate in OPEN_LOOP_RATES:
        lua = lt.write_lua(bench.folder, rate)
        for name in ("limit", "service"):
            out.append((rate, name, load(bench, name, args, lua, rate=rate)))
            print(f"  open loop {rate:,}/s {name}: {rp.describe(out[-1][2])}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run (default 8)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--burst", type=int, default=20_000, help="events of the drain figure (default 20000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 2 s, a burst of 5000")
    parser.add_argument("--json", type=Path, help="write the headline figures here (for bench/all.py)")
    parser.add_argument("--serve", choices=("bare", "sink"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if args.quick:
        args.rounds, args.duration, args.burst = 1, 2.0, 5000
    args.wrk = lt.find_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            figures = measure(bench, args)
        finally:
            bench.stop_all()
    rows = rp.report(args, figures)
    if args.json:
        args.json.write_text(json.dumps(rows))
    return 0


def measure(bench: Bench, args: argparse.Namespace) -> rp.Figures:
    """Every measurement in order, with the processes of `bench`."""
    start_others(bench)
    start_service(bench)
    service = bench.targets["service"]
    wait_first_sync(service.port)
    lua = lt.write_lua(bench.folder)
    for name in TARGETS:  # the first requests pay for imports and caches
        load(bench, name, argparse.Namespace(**{**vars(args), "duration": 1.0}), lua)
    figures = rp.Figures(disk=lt.fsync_ms(bench.folder), rounds=rounds(bench, args, lua))
    if not args.quick:
        figures.samplers = price_samplers(bench, args, lua)
        figures.open_loop = open_loop(bench, args)
    assert service.process is not None
    assert service.database is not None
    events = events_file(bench, service, int(EVENTS_PER_SECOND_CAP * args.duration))  # before py-spy starts
    figures.profile = dr.profile(
        service.process.pid,
        args.duration,
        bench.folder / "profile.txt",
        lambda: load(bench, "service", args, lua, events=events).wrk,
    )
    stop_service(bench)
    first = service.next_sequence
    bodies = [event_body(s, int(time.time())) for s in range(first, first + args.burst)]
    service.next_sequence += args.burst
    figures.drain = dr.drain(
        service.database, bench.api_url, bench.folder / "run.log", bodies, first, lambda: start_service(bench)
    )
    figures.arrival_rate = statistics.median(r["service"].wrk.rate for r in figures.rounds)
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
