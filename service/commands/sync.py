"""`wiseflow-sync sync --once`: one full sync and outbox delivery, progress on stderr, then exit.

Exit 0 when the run completed and every queued grade reached the SIS. A pause (Retry-After, an open
breaker, a maintenance window) is waited out while the total wait stays within `SYNC_MAX_WAIT`; the run
then resumes from its checkpoint. A longer pause ends the command with EXIT_PAUSED and one line naming the
reason; the next invocation resumes where this one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TextIO

from opentelemetry.trace import TracerProvider

from service.adapters.logs import configure_logging
from service.adapters.telemetry import command_tracing
from service.adapters.wiseflow.pauses import CHECK_INTERVAL
from service.app import Service, close_service, open_service
from service.commands import EXIT_PAUSED
from service.core.clock import Clock, SystemClock
from service.errors import StoreError
from service.settings import Settings, load_settings
from service.sync.loops import every
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller, Progress, RunSummary
from service.sync.until_done import Sleep, sync_until_done

EXIT_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the `sync` command."""
    p = subparsers.add_parser(
        "sync", help="mirror flows, participants and grades, and deliver grades to the SIS"
    )
    p.add_argument("--once", action="store_true", required=True, help="run one sync, then exit")
    p.add_argument(
        "--full",
        action="store_true",
        help="reconcile: refresh every flow that is not archived, whether its plan says it is due or not",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Load the settings, run one sync, return the exit code."""
    settings = load_settings(env)
    settings.require_api_credentials()
    settings.require_sink_authentication()
    configure_logging(settings.log_level)
    try:
        with command_tracing(settings, env) as tracing:
            return asyncio.run(
                sync_once(settings, sys.stderr, full=args.full, tracer_provider=tracing.provider)
            )
    except sqlite3.Error as exc:  # read-only or full once running: the CLI's one line for StoreError, exit 2
        raise StoreError(f"database {settings.database}: {exc}") from exc


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

    api_calls: int = 0  # the runs' own count: what the plan's formula predicts
    requests: int = 0
    records: int = 0
    changes: int = 0
    delivered: int = 0
    dead: int = 0  # grades the SIS refused for good in this command
    queued: int = 0  # grades waiting in the outbox at the end (for a sink not yet set)
    waited: float = 0.0


# The sync engine is the service's own wiring (app.open_service), without its background loops.
Engine = Service


@asynccontextmanager
async def open_engine(
    settings: Settings,
    clock: Clock,
    on_progress: Callable[[Progress], None] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Service]:
    """Open the store, the HTTP session, the client, the poller and (with a sink) the deliverer; close them."""
    service = await open_service(settings, clock, tracer_provider, on_progress, command="sync")
    try:
        # A request waiting out a pause in the limiter reads nothing: an operator's `pause clear` is seen here.
        looking = every(CHECK_INTERVAL, service.client.pauses.look)
        await service.tasks.spawn(looking, name="wiseflow-sync:pause")  # close_service ends it
        yield service
    finally:
        await close_service(service)


async def sync_once(
    settings: Settings,
    err: TextIO,
    *,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    full: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> int:
    """The command's work, callable in-process (tests): returns the exit code.

    `sleep` waits out pauses; by default the client's, which returns early when an operator clears one.
    Spans go to `tracer_provider` (the command's), else to the global provider.
    """
    # A pause WISEflow asks for is waited out inside an API call only up to SYNC_MAX_WAIT: a longer one comes
    # back as the run's outcome, where the command's own budget of SYNC_MAX_WAIT decides.
    settings = replace(settings, retry_after_max=min(settings.retry_after_max, settings.max_wait))
    clock = clock or SystemClock()
    report = ProgressReport(err)
    started = time.monotonic()
    totals = Totals()
    async with open_engine(settings, clock, report, tracer_provider) as engine:
        code = await _sync(engine.poller, settings, report, totals, sleep or engine.client.pauses.sleep, full)
        if code == 0 and engine.deliverer is not None:
            code = await _deliver(engine.deliverer, settings, report, totals, sleep or asyncio.sleep, clock)
        if engine.deliverer is None:
            async with engine.uow.read() as unit:
                totals.queued = (await unit.outbox.counts()).get("pending", 0)
        totals.requests = engine.client.calls  # every request that left: token requests and retries included
    if code == 0:
        report.line(
            f"wiseflow-sync sync: ok: {totals.api_calls} API calls ({totals.requests} requests with token"
            f" and retries), {totals.records} records, {totals.changes} changes,"
            f" {_delivered(settings, totals)}, {time.monotonic() - started:.1f} s"
        )
    return code


def _delivered(settings: Settings, totals: Totals) -> str:
    if settings.sink_url is None:
        return (
            f"no grades delivered (SYNC_SINK_URL is not set: {totals.queued} queued for it;"
            " `export grades` prints them)"
        )
    return f"{totals.delivered} grades delivered"


async def _sync(
    poller: Poller, settings: Settings, report: ProgressReport, totals: Totals, sleep: Sleep, full: bool
) -> int:
    """Run until a run completes, waiting out pauses within SYNC_MAX_WAIT."""

    def pausing(pause: float, summary: RunSummary) -> None:
        report.line(f"wiseflow-sync sync: pausing {pause:.1f} s: {summary.reason}")

    result = await sync_until_done(
        lambda full: poller.run_once(full=full),
        full=full,
        max_wait=settings.max_wait - totals.waited,
        sleep=sleep,
        on_pause=pausing,
    )
    totals.api_calls += result.api_calls
    totals.records += result.records
    totals.changes += result.changes
    totals.waited += result.waited
    if result.outcome == "ok":
        return 0
    if result.outcome == "failed":
        report.line(f"wiseflow-sync sync: failed: {result.last.reason}")
        return EXIT_FAILED
    report.line(
        f"wiseflow-sync sync: paused longer than SYNC_MAX_WAIT ({settings.max_wait:g} s): "
        f"{result.last.reason}; the next run resumes from its checkpoint"
    )
    return EXIT_PAUSED


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
        totals.dead += result.dead
        if result.next_due is None:
            break
        pause = max(0.05, result.next_due - clock.wall())
        if totals.waited + pause > settings.max_wait:
            why = "" if result.paused is None else f" (delivery paused: {result.paused})"
            report.line(
                f"wiseflow-sync sync: the SIS did not accept every grade within SYNC_MAX_WAIT{why}; "
                "they stay queued and the next run delivers them"
            )
            return EXIT_PAUSED
        await sleep(pause)
        totals.waited += pause
    if totals.dead:
        report.line(
            f"wiseflow-sync sync: failed: the SIS refused {totals.dead} grade(s) for good; the others were"
            " delivered (`wiseflow-sync outbox dead-letters` lists them, `outbox replay` re-sends them)"
        )
        return EXIT_FAILED
    return 0
