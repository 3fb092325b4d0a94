"""Benchmark: a full and an idle `sync --once` against a large simulated world.

    python bench/sync_scale.py [--flows 2000] [--participants 200] [--scale 1] [--baseline-rss MB]
                               [--seed 7] [--rate-per-second 200] [--rate-per-minute 5000]

Starts `wiseflow-sync simulate` (a subprocess) with a seeded world of flows x participants (2,000 x 200 =
400,000 participants by default; `--scale 10` multiplies the flows: 20,000 x 200, about 13 minutes at
the default budget), then runs `wiseflow-sync sync --once` twice as subprocesses on a fresh
database: a full first run and an idle second one. Prints, side by side:

- records per second (flows, participants and grades read) against the theoretical maximum that the
  rate budget allows for the calls the run needed (calls / min(per-second, per-minute / 60));
- the peak RSS of each sync process (os.wait4; target < 150 MB: pages are streamed, never collected);
- API calls per run, counted from what the run recorded (its `run_requests` rows, token requests left
  out: the request journal keeps only the newest 10,000), next to the plan's formula;
- with `--scale N`: "peak RSS Nx / 1x", the scaled world's peak RSS against the default world's (target
  <= 1.10: a run holds a page of flows, not all of them). The 1x world runs first, in the same
  invocation (about 2 more minutes), unless `--baseline-rss MB` gives its peak from an earlier run.

Every figure is printed with the world's size beside it. A sync that fails (exit status, or no run
recorded) stops the benchmark with one line naming it and a non-zero exit. No sink is configured: this
measures the mirror, not the SIS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from call_forecast import predict_run_calls

from service.core.planner import PlanPolicy

ROOT = Path(__file__).resolve().parents[1]
RSS_TARGET_MB = 150
# The 10x world's peak RSS against the 1x world's: memory must not grow with the number of flows.
RSS_GROWTH_TARGET = 1.10
SCALE_HINT = 10


@dataclass(frozen=True)
class RunFigures:
    """One sync process, measured."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    records: int
    calls: int  # from the run's own record, token requests left out
    calls_predicted: int
    summary: str


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """`wiseflow-sync simulate` on a free port; returns the process and its /v1 URL."""
    command = [sys.executable, "-m", "service", "simulate", "--port", "0", "--seed", str(args.seed)]
    command += ["--flows", str(args.flows), "--participants", str(args.participants)]
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/v1)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, match.group(1)


def sync_env(api_url: str, database: Path, args: argparse.Namespace) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_"))}
    return {
        **keep,
        "WISEFLOW_API_URL": api_url,
        "WISEFLOW_CLIENT_ID": "demo-client",
        "WISEFLOW_CLIENT_SECRET": "demo-secret",
        "SYNC_DATABASE": str(database),
        "SYNC_RATE_PER_SECOND": str(args.rate_per_second),
        "SYNC_RATE_PER_MINUTE": str(args.rate_per_minute),
        "SYNC_CONCURRENCY": str(args.concurrency),
        "LOG_LEVEL": "WARNING",
    }


class SyncFailed(Exception):
    """The sync the benchmark started did not complete: the message says how, in one line."""


def run_sync(env: dict[str, str], database: Path, first: bool) -> RunFigures:
    """One `sync --once` subprocess: its exit code, wall time, peak RSS, and what its run recorded."""
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "service", "sync", "--once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    if process.returncode != 0:
        raise SyncFailed(f"sync --once exited {process.returncode}: {last[:300] or '(no output)'}")
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            run_id, records = db.execute(
                "SELECT run_id, records FROM sync_runs ORDER BY run_id DESC LIMIT 1"
            ).fetchone()
            calls = db.execute(
                "SELECT COALESCE(SUM(requests), 0) FROM run_requests"
                " WHERE run_id = ? AND route NOT LIKE '%/token'",
                (run_id,),
            ).fetchone()[0]
            predicted = forecast(db, first)
    except (sqlite3.Error, TypeError) as exc:  # no database, no table, or no run recorded
        raise SyncFailed(
            f"sync --once recorded no run ({type(exc).__name__}: {exc}); it said: {last[:300]}"
        ) from None
    return RunFigures(process.returncode, seconds, usage.ru_maxrss / 1024, records, calls, predicted, last)


def forecast(db: sqlite3.Connection, first: bool) -> int:
    """The plan's formula for the run that just ended, from what the mirror now holds."""
    policy = PlanPolicy()
    if first:  # every flow listed (archived ones too, once) and refreshed; no events on a first run
        listed = db.execute("SELECT count(*) FROM flows").fetchone()[0]
        sizes = [
            row[0]
            for row in db.execute(
                "SELECT count(p.participant_id) FROM flows f LEFT JOIN participants p USING (flow_id)"
                " GROUP BY f.flow_id"
            )
        ]
        return predict_run_calls(listed, sizes, None, policy).total
    listed = db.execute("SELECT count(*) FROM flows WHERE state != 'ARCHIVED'").fetchone()[0]
    return predict_run_calls(listed, [], 0, policy).total  # idle: nothing due, one events page


def theoretical_records_per_second(figures: RunFigures, args: argparse.Namespace) -> float:
    """Records / the least time the rate budget allows for the calls made."""
    rate = min(args.rate_per_second, args.rate_per_minute / 60)
    return figures.records / (figures.calls / rate) if figures.calls else 0.0


def report(name: str, figures: RunFigures, args: argparse.Namespace) -> None:
    """Print one run's figures, each with the world's size beside it."""
    measured = figures.records / figures.seconds if figures.seconds else 0.0
    best = theoretical_records_per_second(figures, args)
    ratio = measured / best if best else 0.0
    rss = "ok" if figures.peak_rss_mb < RSS_TARGET_MB else "OVER TARGET"
    at = f"[{world(args)}]"
    print(f"{name} run (exit {figures.exit_code}, {figures.seconds:.1f} s) {at}")
    print(f"  records            {figures.records:>10,}   {at}")
    if name == "full":  # an idle run's few records are dwarfed by process start-up: no rate to speak of
        print(f"  records/s          {measured:>10,.0f}   max {best:,.0f}/s   ratio {ratio:.2f}   {at}")
    print(f"  peak RSS           {figures.peak_rss_mb:>10.1f} MB   target < {RSS_TARGET_MB} MB: {rss}   {at}")
    match = "equal" if figures.calls == figures.calls_predicted else "DIFFERENT"
    print(f"  API calls          {figures.calls:>10,}   formula {figures.calls_predicted:,} ({match})   {at}")
    print(f"  summary            {figures.summary}")


def world(args: argparse.Namespace) -> str:
    """E.g. "2,000 flows x 200 participants"."""
    return f"{args.flows:,} flows x {args.participants:,} participants"


def headline(full: RunFigures, idle: RunFigures, args: argparse.Namespace) -> list[list[str]]:
    """The rows `bench/all.py` prints: figure, value, target, verdict."""
    best = theoretical_records_per_second(full, args)
    ratio = full.records / full.seconds / best if best and full.seconds else 0.0
    peak = max(full.peak_rss_mb, idle.peak_rss_mb)
    at = f"{args.flows:,}x{args.participants:,}"
    calls = f"{full.calls:,} / {idle.calls:,} (formula {full.calls_predicted:,} / {idle.calls_predicted:,})"
    equal = full.calls == full.calls_predicted and idle.calls == idle.calls_predicted
    return [
        ["sync_scale", f"full sync {at}: records/s vs budget", f"{ratio:.2f}", ">= 0.95", _ok(ratio >= 0.95)],
        [
            "sync_scale",
            f"peak RSS of sync --once, {at}",
            f"{peak:.0f} MB",
            f"< {RSS_TARGET_MB} MB",
            _ok(peak < RSS_TARGET_MB),
        ],
        ["sync_scale", f"API calls full / idle, {at}", calls, "= formula", _ok(equal)],
    ]


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def measure(args: argparse.Namespace) -> tuple[RunFigures, RunFigures]:
    """A full and an idle `sync --once` on a fresh database against a simulator of `args`' world, reported."""
    simulator, api_url = start_simulator(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            database = Path(tmp) / "bench.sqlite3"
            env = sync_env(api_url, database, args)
            print(
                f"world: {world(args)} (seed {args.seed}); "
                f"budget {args.rate_per_second}/s, {args.rate_per_minute}/min; concurrency {args.concurrency}",
                flush=True,
            )
            full = run_sync(env, database, first=True)
            report("full", full, args)
            idle = run_sync(env, database, first=False)
            report("idle", idle, args)
            print(f"idle/full API calls: {idle.calls / max(full.calls, 1):.4f}   [{world(args)}]", flush=True)
            return full, idle
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def rss_ratio(peak: float, baseline: float, args: argparse.Namespace) -> list[str]:
    """Print the scaled world's peak RSS against the default world's; the headline row."""
    ratio = peak / baseline
    print(
        f"peak RSS {args.scale}x / 1x = {ratio:.2f}x ({peak:.1f} MB / {baseline:.1f} MB; "
        f"target <= {RSS_GROWTH_TARGET:.2f})   [{world(args)} against {args.flows // args.scale:,} flows]"
    )
    at = f"{args.flows:,} / {args.flows // args.scale:,} flows"
    verdict = _ok(ratio <= RSS_GROWTH_TARGET)
    return [
        "sync_scale",
        f"peak RSS {args.scale}x / 1x ({at})",
        f"{ratio:.2f}x",
        f"<= {RSS_GROWTH_TARGET:.2f}",
        verdict,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--scale", type=int, default=1, help="multiply the flows (10: the 10x world)")
    parser.add_argument(
        "--baseline-rss",
        type=float,
        metavar="MB",
        help="with --scale: the 1x world's peak RSS, measured before (default: measure it first, here)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate-per-second", type=int, default=200)
    parser.add_argument("--rate-per-minute", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the headline figures here (for bench/all.py)")
    args = parser.parse_args(argv)
    baseline = args.baseline_rss
    try:
        if args.scale > 1 and baseline is None:  # the 1x world first, same machine and settings: the yardstick
            baseline = max(run.peak_rss_mb for run in measure(args))
            print()
        args.flows *= args.scale
        full, idle = measure(args)
    except SyncFailed as exc:
        print(f"sync_scale [{world(args)}]: {exc}", file=sys.stderr)
        return 1
    rows = headline(full, idle, args)
    if baseline is not None:
        rows.append(rss_ratio(max(full.peak_rss_mb, idle.peak_rss_mb), baseline, args))
    else:
        print(
            f"the {SCALE_HINT}x world: python bench/sync_scale.py --scale {SCALE_HINT} (about 15 minutes; "
            f"runs this world first and prints peak RSS {SCALE_HINT}x / 1x, target <= {RSS_GROWTH_TARGET:.2f})"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
