"""Benchmark: a full and an idle `sync --once` against a large simulated world.

    python bench/sync_scale.py [--flows 2000] [--participants 200] [--seed 7]
                               [--rate-per-second 200] [--rate-per-minute 5000]

Starts `wiseflow-sync simulate` (a subprocess) with a seeded world of flows x participants (2,000 x 200 =
400,000 participants by default), then runs `wiseflow-sync sync --once` twice as subprocesses on a fresh
database: a full first run and an idle second one. Prints, side by side:

- records per second (flows, participants and grades read) against the theoretical maximum that the
  rate budget allows for the calls the run needed (calls / min(per-second, per-minute / 60));
- the peak RSS of each sync process (os.wait4; target < 150 MB: pages are streamed, never collected);
- API calls per run, counted from the request journal the sync writes, next to the plan's formula.

No sink is configured: this measures the mirror, not the SIS.
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


@dataclass(frozen=True)
class RunFigures:
    """One sync process, measured."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    records: int
    calls_journal: int
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


def run_sync(env: dict[str, str], database: Path, first: bool) -> RunFigures:
    """One `sync --once` subprocess: its exit code, wall time, peak RSS, and the database's figures."""
    started_wall = time.time()
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
    with sqlite3.connect(database) as db:
        records = db.execute("SELECT records FROM sync_runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
        calls = db.execute(
            "SELECT count(*) FROM request_journal WHERE at >= ? AND path NOT LIKE '%/oauth2/token'",
            (started_wall,),
        ).fetchone()[0]
        predicted = forecast(db, first)
    return RunFigures(
        process.returncode,
        seconds,
        usage.ru_maxrss / 1024,
        records,
        calls,
        predicted,
        lines[-1] if lines else "",
    )


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
    return figures.records / (figures.calls_journal / rate) if figures.calls_journal else 0.0


def report(name: str, figures: RunFigures, args: argparse.Namespace) -> None:
    measured = figures.records / figures.seconds if figures.seconds else 0.0
    best = theoretical_records_per_second(figures, args)
    ratio = measured / best if best else 0.0
    rss = "ok" if figures.peak_rss_mb < RSS_TARGET_MB else "OVER TARGET"
    print(f"{name} run (exit {figures.exit_code}, {figures.seconds:.1f} s)")
    print(f"  records            {figures.records:>10,}")
    if name == "full":  # an idle run's few records are dwarfed by process start-up: no rate to speak of
        print(f"  records/s          {measured:>10,.0f}   theoretical max {best:,.0f}/s   ratio {ratio:.2f}")
    print(f"  peak RSS           {figures.peak_rss_mb:>10.1f} MB   target < {RSS_TARGET_MB} MB: {rss}")
    print(f"  API calls          {figures.calls_journal:>10,}   plan's formula {figures.calls_predicted:,}")
    print(f"  summary            {figures.summary}")


def headline(full: RunFigures, idle: RunFigures, args: argparse.Namespace) -> list[list[str]]:
    """The rows `bench/all.py` prints: figure, value, target, verdict."""
    best = theoretical_records_per_second(full, args)
    ratio = full.records / full.seconds / best if best and full.seconds else 0.0
    peak = max(full.peak_rss_mb, idle.peak_rss_mb)
    world = f"{args.flows:,}x{args.participants:,}"
    return [
        ["sync_scale", f"full sync {world}: records/s vs budget", f"{ratio:.2f}", "-", "-"],
        [
            "sync_scale",
            "peak RSS of sync --once",
            f"{peak:.0f} MB",
            f"< {RSS_TARGET_MB} MB",
            _ok(peak < RSS_TARGET_MB),
        ],
        ["sync_scale", "API calls full / idle", f"{full.calls_journal:,} / {idle.calls_journal:,}", "-", "-"],
    ]


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate-per-second", type=int, default=200)
    parser.add_argument("--rate-per-minute", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the headline figures here (for bench/all.py)")
    args = parser.parse_args(argv)
    simulator, api_url = start_simulator(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            database = Path(tmp) / "bench.sqlite3"
            env = sync_env(api_url, database, args)
            print(
                f"world: {args.flows:,} flows x {args.participants:,} participants (seed {args.seed}); "
                f"budget {args.rate_per_second}/s, {args.rate_per_minute}/min; concurrency {args.concurrency}"
            )
            full = run_sync(env, database, first=True)
            report("full", full, args)
            idle = run_sync(env, database, first=False)
            report("idle", idle, args)
            print(f"idle/full API calls: {idle.calls_journal / max(full.calls_journal, 1):.4f}")
            if args.json is not None:
                args.json.write_text(json.dumps(headline(full, idle, args)))
            return 0 if full.exit_code == idle.exit_code == 0 else 1
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
