"""Benchmark: the client's rate budget against the simulator, beside a naive aiolimiter baseline.

    python bench/ratelimit.py [--budget B] [--requests N] [--workers W]

Starts two simulators in this process, each limiting B requests per second (WISEflow's fixed-window
counting, 429 with Retry-After above it), and sends N GET /license/info through:

- `WiseflowClient` with SYNC_RATE_PER_SECOND = B (the sliding-window gate, retries, the shared pause);
- a naive baseline: plain aiohttp behind `aiolimiter.AsyncLimiter(B, 1)`, which lets a full bucket burst.

Figures come from each simulator's journal (what the server saw): achieved rate / B (target >= 0.95),
the count of 429s (target 0) and the largest count in any sliding 1-second window (must be <= B).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiolimiter import AsyncLimiter

from service.adapters.wiseflow import WiseflowClient
from service.core.clock import SystemClock
from service.errors import ApiError
from service.settings import Secret, Settings
from service.simulator import build_simulator_app, make_sim_config


@dataclass(frozen=True)
class Figures:
    """What one run looked like from the server's side."""

    name: str
    sent: int
    ok: int
    refused: int
    rate: float
    busiest_second: int


def busiest(times: Sequence[float], period: float = 1.0) -> int:
    """The largest number of times inside any half-open window [t, t + period)."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


async def start_simulator(budget: int) -> tuple[web.AppRunner, str]:
    """A simulator on 127.0.0.1 limiting `budget` requests per second (the minute window out of the way)."""
    config = make_sim_config("calm", env={}, rate_per_second=budget, rate_per_minute=budget * 60)
    runner = web.AppRunner(build_simulator_app(config, SystemClock()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def figures(name: str, root: str, budget: int) -> Figures:
    """Read the simulator's journal and compute the figures of the API requests."""
    async with aiohttp.ClientSession() as session, session.get(root + "/_sim/journal") as response:
        journal: list[dict[str, Any]] = (await response.json())["requests"]
    api = [r for r in journal if r["path"] == "/v1/license/info"]
    ok = [r["time"] for r in api if r["status"] == 200]
    span = max(ok) - min(ok) if len(ok) > 1 else float("inf")
    return Figures(
        name=name,
        sent=len(api),
        ok=len(ok),
        refused=sum(1 for r in api if r["status"] == 429),
        rate=(len(ok) - 1) / span / budget if span else 0.0,
        busiest_second=busiest([r["time"] for r in api]),
    )


async def drive(requests: int, workers: int, one: Callable[[], Awaitable[None]]) -> None:
    """`requests` calls of `one` spread over `workers` concurrent tasks."""
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            await one()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def run_client(root: str, budget: int, requests: int, workers: int) -> Figures:
    """N calls through WiseflowClient with a per-second budget of B."""
    settings = Settings(
        api_url=root + "/v1",
        client_id="demo-client",
        client_secret=Secret("demo-secret"),
        client_name="wiseflow-sync-bench",
        rate_per_second=budget,
        rate_per_minute=budget * 60,
    )
    async with WiseflowClient(settings) as client:
        await drive(requests, workers, client.license_info)
    return await figures("WiseflowClient (sliding windows)", root, budget)


async def run_naive(root: str, budget: int, requests: int, workers: int) -> Figures:
    """N calls through plain aiohttp behind AsyncLimiter(B, 1); a 429 is counted, not retried."""
    limiter = AsyncLimiter(budget, 1)
    headers = {"x-api-key": "demo-api-key", "X-Client-Name": "naive-baseline"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one() -> None:
            async with limiter, session.get(root + "/v1/license/info") as response:
                await response.read()

        await drive(requests, workers, one)
    return await figures(f"naive AsyncLimiter({budget}, 1)", root, budget)


def report(budget: int, results: Sequence[Figures], seconds: float) -> None:
    """One table, both runs side by side."""
    print(f"budget B = {budget} req/s; targets: rate/B >= 0.95, 429s = 0, busiest 1 s window <= B")
    print(f"{'run':36} {'sent':>6} {'2xx':>6} {'429s':>6} {'rate/B':>8} {'max in 1 s':>11}")
    for f in results:
        print(f"{f.name:36} {f.sent:6d} {f.ok:6d} {f.refused:6d} {f.rate:8.3f} {f.busiest_second:11d}")
    print(f"(total wall time {seconds:.1f} s)")


async def main(budget: int, requests: int, workers: int, json_path: Path | None = None) -> int:
    """Both runs, each against its own simulator; exit 1 when the client misses a target."""
    started = time.perf_counter()
    results = []
    for run in (run_client, run_naive):
        runner, root = await start_simulator(budget)
        try:
            results.append(await run(root, budget, requests, workers))
        except ApiError as exc:
            print(f"{run.__name__} failed: {exc}")
            return 1
        finally:
            await runner.cleanup()
    report(budget, results, time.perf_counter() - started)
    ours = results[0]
    passed = ours.rate >= 0.95 and ours.refused == 0 and ours.busiest_second <= budget
    if json_path is not None:
        json_path.write_text(json.dumps(headline(budget, ours, results[1])))  # noqa: ASYNC240 - after the runs
    return 0 if passed else 1


def headline(budget: int, ours: Figures, naive: Figures) -> list[list[str]]:
    """The rows `bench/all.py` prints: figure, value, target, verdict."""
    return [
        ["ratelimit", "achieved rate / budget", f"{ours.rate:.3f}", ">= 0.95", _ok(ours.rate >= 0.95)],
        [
            "ratelimit",
            "429s (naive baseline)",
            f"{ours.refused} ({naive.refused})",
            "0",
            _ok(ours.refused == 0),
        ],
        [
            "ratelimit",
            "busiest 1 s window",
            str(ours.busiest_second),
            f"<= {budget}",
            _ok(ours.busiest_second <= budget),
        ],
    ]


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100, help="requests per second (default 100)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument("--json", type=Path, help="write the headline figures here (for bench/all.py)")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.budget, args.requests, args.workers, args.json)))
