"""`wiseflow-sync sync --once`: one full sync and outbox delivery, progress on stderr, then exit.

Exit 0 when the run completed and every queued grade reached the SIS. A pause (Retry-After, an open
breaker, a maintenance window) is waited out while the total wait stays within `SYNC_MAX_WAIT`; the run
then resumes from its checkpoint. A longer pause ends the command with EXIT_PAUSED and one line naming the
reason; the next invocation resumes where this one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp

from service.adapters.logs import configure_logging
from service.adapters.sink import HttpSink
from service.adapters.store import Store
from service.adapters.store.journal import JournalWriter
from service.adapters.wiseflow import WiseflowClient
from service.core.clock import Clock, SystemClock
from service.core.planner import PlanPolicy
from service.settings import Settings, load_settings
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller, Progress, RunSummary

EXIT_FAILED = 1
# EX_TEMPFAIL (sysexits.h): try again later; a scheduler may simply re-run the command.
EXIT_PAUSED = 75
# When WISEflow is down without saying for how long, look again after this many seconds.
DEFAULT_PAUSE = 5.0

Sleep = Callable[[float], Awaitable[None]]


def register(subparsers: Any) -> None:
    """Add the `sync` command."""
    p = subparsers.add_parser(
        "sync", help="mirror flows, participants and grades, and deliver grades to the SIS"
    )
    p.add_argument("--once", action="store_true", required=True, help="run one sync, then exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Load the settings, run one sync, return the exit code."""
    settings = load_settings(env)
    settings.require_api_credentials()
    configure_logging(settings.log_level)
    return asyncio.run(sync_once(settings, sys.stderr))


class ProgressReport:
    """Progress on stderr: a redrawn bar on a terminal, a plain line at most every `every` s otherwise."""

    def __init__(self, out: TextIO, every: float = 5.0) -> None:
        self._out = out
        self._tty = out.isatty()
        self._every = every
        self._last: float | None = None  # the first report always prints

    def __call__(self, progress: Progress) -> None:
        if self._tty:
            self._out.write("\r" + _bar(progress) + " " * 4)
            self._out.flush()
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self._every:
            self._last = now
            print(f"wiseflow-sync sync: {_counts(progress)}", file=self._out, flush=True)

    def line(self, text: str) -> None:
        """A line of its own (ending a bar first)."""
        if self._tty:
            self._out.write("\r\033[K")
        print(text, file=self._out, flush=True)


def _counts(progress: Progress) -> str:
    total = "" if progress.total is None else f"/{progress.total}"
    noun = "flows listed" if progress.phase == "discovery" else "flows refreshed"
    return f"{progress.done}{total} {noun}"


def _bar(progress: Progress, width: int = 30) -> str:
    if not progress.total:
        return f"{progress.phase:<9} {_counts(progress)}"
    filled = int(width * min(progress.done, progress.total) / progress.total)
    return f"{progress.phase:<9} [{'#' * filled}{'.' * (width - filled)}] {_counts(progress)}"


@dataclass(slots=True)
class Totals:
    """What the whole command did, across resumed runs."""

    api_calls: int = 0
    records: int = 0
    changes: int = 0
    delivered: int = 0
    waited: float = 0.0


@dataclass(slots=True)
class Engine:
    """The sync engine's objects, wired from the settings (the sink and deliverer only with SYNC_SINK_URL)."""

    store: Store
    client: WiseflowClient
    poller: Poller
    deliverer: OutboxDeliverer | None
    journal: JournalWriter


@asynccontextmanager
async def open_engine(
    settings: Settings, clock: Clock, on_progress: Callable[[Progress], None] | None = None
) -> AsyncIterator[Engine]:
    """Open the store, the HTTP session, the client, the poller and (with a sink) the deliverer; close them."""
    store = await Store.open(settings.database)
    journal = JournalWriter(store)
    try:
        async with aiohttp.ClientSession() as session:
            client = WiseflowClient(settings, session, clock, on_request=journal.record)
            sink = (
                HttpSink(settings.sink_url, session, client_name=settings.client_name)
                if settings.sink_url
                else None
            )
            policy = PlanPolicy(poll_interval=settings.poll_interval)
            rng = random.Random()  # noqa: S311 - jitter, not cryptography
            poller = Poller(
                client,
                store,
                clock,
                rng,
                policy,
                concurrency=settings.concurrency,
                outbox_enabled=sink is not None,
                on_progress=on_progress,
            )
            deliverer = None if sink is None else OutboxDeliverer(store, sink, clock, rng)
            yield Engine(store, client, poller, deliverer, journal)
    finally:
        await journal.close()
        await store.close()


async def sync_once(
    settings: Settings, err: TextIO, *, clock: Clock | None = None, sleep: Sleep = asyncio.sleep
) -> int:
    """The command's work, callable in-process (tests): returns the exit code."""
    clock = clock or SystemClock()
    report = ProgressReport(err)
    started = time.monotonic()
    totals = Totals()
    async with open_engine(settings, clock, report) as engine:
        code = await _sync(engine.poller, settings, report, totals, sleep)
        if code == 0 and engine.deliverer is not None:
            code = await _deliver(engine.deliverer, settings, report, totals, sleep, clock)
        totals.api_calls = engine.client.calls  # every request that left: token requests and retries included
    if code == 0:
        report.line(
            f"wiseflow-sync sync: ok: {totals.api_calls} API calls, {totals.records} records, "
            f"{totals.changes} changes, {totals.delivered} grades delivered, {time.monotonic() - started:.1f} s"
        )
    return code


async def _sync(
    poller: Poller, settings: Settings, report: ProgressReport, totals: Totals, sleep: Sleep
) -> int:
    """Run until a run completes, waiting out pauses within SYNC_MAX_WAIT."""
    while True:
        summary = await poller.run_once()
        totals.records += summary.records
        totals.changes += summary.changes
        if summary.outcome == "ok":
            return 0
        if summary.outcome == "failed":
            report.line(f"wiseflow-sync sync: failed: {summary.reason}")
            return EXIT_FAILED
        pause = _pause(summary)
        if totals.waited + pause > settings.max_wait:
            report.line(
                f"wiseflow-sync sync: paused longer than SYNC_MAX_WAIT ({settings.max_wait:g} s): "
                f"{summary.reason}; the next run resumes from its checkpoint"
            )
            return EXIT_PAUSED
        report.line(f"wiseflow-sync sync: pausing {pause:.1f} s: {summary.reason}")
        await sleep(pause)
        totals.waited += pause


def _pause(summary: RunSummary) -> float:
    return max(0.1, summary.retry_after if summary.retry_after is not None else DEFAULT_PAUSE)


async def _deliver(
    deliverer: OutboxDeliverer,
    settings: Settings,
    report: ProgressReport,
    totals: Totals,
    sleep: Sleep,
    clock: Clock,
) -> int:
    """Deliver the outbox until it is empty, waiting for retries within SYNC_MAX_WAIT."""
    while True:
        result = await deliverer.deliver_due()
        totals.delivered += result.delivered
        if result.next_due is None:
            return 0
        pause = max(0.05, result.next_due - clock.wall())
        if totals.waited + pause > settings.max_wait:
            report.line(
                "wiseflow-sync sync: the SIS did not accept every grade within SYNC_MAX_WAIT; "
                "they stay queued and the next run delivers them"
            )
            return EXIT_PAUSED
        await sleep(pause)
        totals.waited += pause
