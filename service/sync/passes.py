"""The one pass loop of the queues, shared by the inbox worker and the outbox deliverer.

    run_passes(one_pass, woken, clock, idle)

A pass runs at once, then again as soon as `woken` is set, when the time the last pass returned falls
due, or after `idle` seconds, whichever comes first. The wake-up is cleared *before* each pass: a wake
that lands while a pass runs (a row committed after the pass read its batch) stays set and starts the
next pass at once. Cleared after the pass, it would be lost and its row would wait out the idle interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from service.core.clock import Clock


class Outcome(Protocol):
    """What a pass reports (`PassResult`, `DeliveryResult`): when the next pass is due."""

    @property
    def next_due(self) -> float | None:
        """The wall time at which the next pass is due; None: only a wake-up or the idle interval."""
        ...


# One pass. An exception ends the loop: the pass itself decides what it may survive.
Pass = Callable[[], Awaitable[Outcome]]


async def run_passes(one_pass: Pass, woken: asyncio.Event, clock: Clock, idle: float) -> None:
    """Pass after pass until cancelled: after a wake-up, when the next pass is due, or every `idle` s."""
    while True:
        woken.clear()  # before the pass, never after: see the module docstring
        outcome = await one_pass()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=pause_before(outcome.next_due, clock.wall(), idle))


def pause_before(next_due: float | None, now: float, idle: float) -> float:
    """Seconds to wait for the next pass: until `next_due` (none when it is past), `idle` at most."""
    if next_due is None:
        return idle
    return max(0.0, min(idle, next_due - now))
