"""The asyncio side of the rate budget: aiolimiter's token bucket, then the strict bound and the pause.

A request is admitted in two steps, both on the event loop's clock (`loop.time()`):

1. `aiolimiter.AsyncLimiter(burst, burst * interval)`, the token bucket: GCRA with a small burst, so
   admissions are spaced at the budget's rate and never come in a wall of `per_second` at once.
2. `RateGate.try_acquire` (service.core.ratebudget, pure): the sliding-window bound a bucket cannot give,
   the shared pause of a 429, the hold behind the first request after a pause, the server's quotas. When
   it says wait (a pause began while this caller was in the bucket, say) the caller sleeps and goes round
   again; the bucket's token it spent only spaces it a little more.

One `asyncio.Lock` makes callers take turns in arrival order (FIFO), so no caller starves. `urgent`
callers (a token renewal) skip that queue, never the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiolimiter import AsyncLimiter

from service.core.ratebudget import RateBudget, RateGate
from service.errors import RateLimited


class LoopClock:
    """The running event loop's clock as a `Clock`: the gate and the bucket read the same time."""

    def monotonic(self) -> float:
        """`loop.time()` of the running loop."""
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Unix seconds (the gate never asks; a `Clock` has both)."""
        return time.time()


class AsyncRateLimiter:
    """One per process, shared by every caller: enforces the budget and the shared pause."""

    def __init__(self, budget: RateBudget, max_hold: float, clock: LoopClock | None = None) -> None:
        self.gate = RateGate(budget, clock or LoopClock())
        self._bucket = AsyncLimiter(budget.burst, budget.burst * budget.interval)
        # A wait longer than this is handed back to the caller as RateLimited: the scheduler defers the
        # work instead of a task sitting on a long pause (SYNC_RETRY_AFTER_MAX). Waits within a second are
        # ordinary pacing and never fail, whatever the setting.
        self._max_hold = max(max_hold, 1.0)
        self._lock = asyncio.Lock()
        self._settled = asyncio.Event()
        self._lifted = asyncio.Event()  # set (and replaced) by `lift`: callers sleeping on the pause wake

    async def acquire(self, method: str, path: str, attempt: int, *, urgent: bool = False) -> bool:
        """Wait for a slot; raise `RateLimited` at once when the wait is longer than `max_hold`.

        True when this request is the first after a pause: its sender must call `settle` on its answer.
        `urgent` (a token renewal, or a request that waited its turn once already) skips the queue and the
        hold behind a first request after a pause, but not the budget or the pause itself.
        """
        if urgent:
            return await self._admit(method, path, attempt, urgent=True)
        async with self._lock:
            return await self._admit(method, path, attempt, urgent=False)

    async def _admit(self, method: str, path: str, attempt: int, *, urgent: bool) -> bool:
        while True:
            wait = self.gate.earliest(urgent) - self.gate.clock.monotonic()
            if wait <= 0:
                await self._bucket.acquire()
                wait = self.gate.try_acquire(urgent=urgent)
                if wait <= 0:
                    return self.gate.probing
            if self.gate.probing and not urgent:
                # The first request after a pause is out: wake on its answer, not on the timeout.
                self._settled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), wait)
                continue
            if wait > self._max_hold:
                raise RateLimited(
                    "rate budget paused", retry_after=wait, method=method, path=path, attempt=attempt
                )
            if self.gate.pause_remaining() > 0:
                with contextlib.suppress(TimeoutError):  # an operator's clear ends the pause early
                    await asyncio.wait_for(self._lifted.wait(), wait)
            else:
                await asyncio.sleep(wait)  # ordinary pacing: nothing can end it early

    def settle(self) -> None:
        """An answer (or a failure) came back: release callers held behind the first request after a pause."""
        self.gate.settle()
        self._settled.set()

    def pause(self, seconds: float) -> None:
        """Stop every caller for `seconds` (a 429's Retry-After)."""
        self.gate.pause(seconds)
        self._settled.set()  # callers held behind a first request re-read the (longer) wait

    def lift(self) -> None:
        """End the pause now (an operator cleared it): callers sleeping on it go round the gate again."""
        self.gate.lift()
        self._lifted.set()
        self._lifted = asyncio.Event()
        self._settled.set()
