"""Sync until done or paused: the one routine behind `run`'s poll loop, `sync --once` and `demo`.

A run that WISEflow pauses (a Retry-After, an open breaker, maintenance) is resumed from its
checkpoint after the pause it asked for, while the pauses add up to no more than `max_wait`; a pause that
would go over ends the routine as "paused" (the caller decides: `sync --once` exits 75, the poll loop
sleeps). A failed run (refused credentials, a malformed listing) ends it at once: waiting cannot cure it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from service.core.run_summary import RunSummary
from service.sync.poller import Poller
from service.sync.signals import Signals

# When WISEflow is unavailable without saying for how long, look again after this many seconds.
DEFAULT_PAUSE: Final = 5.0
# Never resume sooner than this, whatever WISEflow said ("Retry-After: 0" must not make a hot loop).
MIN_PAUSE: Final = 0.1

RunSync = Callable[[bool], Awaitable[RunSummary]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class SyncOutcome:
    """How the routine ended (ok | failed | paused), with the totals of its runs."""

    outcome: str
    last: RunSummary
    api_calls: int = 0
    records: int = 0
    changes: int = 0
    waited: float = 0.0
    pause: float = 0.0  # paused: the pause that would have gone over `max_wait`


def pause_for(summary: RunSummary) -> float:
    """How long to wait before resuming a paused run."""
    return max(MIN_PAUSE, summary.retry_after if summary.retry_after is not None else DEFAULT_PAUSE)


async def sync_until_done(
    run: RunSync,
    *,
    full: bool = False,
    max_wait: float,
    sleep: Sleep = asyncio.sleep,
    on_pause: Callable[[float, RunSummary], None] | None = None,
) -> SyncOutcome:
    """Run, and resume after each pause, until a run ends ok or failed or the pauses would pass `max_wait`."""
    waited = 0.0
    totals: SyncOutcome | None = None
    while True:
        # A resumed run does not mark again: the flows a full run has not reached yet are still marked.
        summary = await run(full)
        full = False
        if totals is None:
            totals = SyncOutcome(summary.outcome, summary)
        totals.last, totals.outcome = summary, summary.outcome
        totals.api_calls += summary.api_calls
        totals.records += summary.records
        totals.changes += summary.changes
        if summary.outcome in ("ok", "failed"):
            return totals
        pause = pause_for(summary)
        if waited + pause > max_wait:
            totals.outcome, totals.pause = "paused", pause
            return totals
        if on_pause is not None:
            on_pause(pause, summary)
        await sleep(pause)
        waited += pause
        totals.waited = waited


class SyncRunner:
    """One sync run of the service: the poller's run, told to its observers (status board, metrics), then
    waking the deliverer for the grades it changed."""

    def __init__(
        self, poller: Poller, on_run: Sequence[Callable[[RunSummary], None]], signals: Signals
    ) -> None:
        self._poller = poller
        self._on_run = tuple(on_run)
        self._signals = signals

    async def run(self, full: bool = False) -> RunSummary:
        """One run (`full`: every live flow, due or not), then wake the deliverer for what it queued."""
        summary = await self._poller.run_once(full=full)
        for observe in self._on_run:
            observe(summary)
        self._signals.queued(summary.changes)
        return summary
