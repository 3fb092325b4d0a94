"""The asyncio side of the rate budget: callers queue here and sleep for what `RateGate` tells them.

The admission decision is pure (`service.core.ratebudget.RateGate`, proven on a fake clock); this class
only adds the waiting. One `asyncio.Lock` makes callers take turns in arrival order (FIFO), so no caller
starves and the gate is asked by one caller at a time. The gate reads the client's `Clock`, and
`asyncio.sleep` the loop's clock: both are the monotonic clock in production (`SystemClock`).
"""

from __future__ import annotations

import asyncio
import contextlib

from service.core.ratebudget import RateGate
from service.core.retry_after import Quota
from service.errors import RateLimited


class AsyncRateLimiter:
    """One per process, shared by every caller: enforces the budget and the shared pause."""

    def __init__(self, gate: RateGate, max_hold: float) -> None:
        self.gate = gate
        # A wait longer than this is handed back to the caller as RateLimited: the scheduler defers the
        # work instead of a task sitting on a long pause (SYNC_RETRY_AFTER_MAX). Waits within a second are
        # ordinary pacing and never fail, whatever the setting.
        self._max_hold = max(max_hold, 1.0)
        self._lock = asyncio.Lock()
        self._settled = asyncio.Event()

    async def acquire(self, method: str, path: str, attempt: int, *, urgent: bool = False) -> bool:
        """Wait for a slot; raise `RateLimited` at once when the wait is longer than `max_hold`.

        True when this request is the first after a pause: its sender must call `settle` on its answer.
        `urgent` (a token renewal, or a request that waited its turn once already) skips the queue and the hold
        behind a first request after a pause, but not the budget or the pause itself.
        """
        if urgent:
            return await self._admit(method, path, attempt, urgent=True)
        async with self._lock:
            return await self._admit(method, path, attempt, urgent=False)

    async def _admit(self, method: str, path: str, attempt: int, *, urgent: bool) -> bool:
        while (wait := self.gate.try_acquire(urgent=urgent)) > 0:
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
            await asyncio.sleep(wait)
        return self.gate.probing

    def settle(self) -> None:
        """An answer (or a failure) came back: release callers held behind the first request after a pause."""
        self.gate.settle()
        self._settled.set()

    def pause(self, seconds: float) -> None:
        """Stop every caller for `seconds` (a 429's Retry-After)."""
        self.gate.pause(seconds)
        self._settled.set()  # callers held behind a first request re-read the (longer) wait

    def observe(self, quotas: list[Quota]) -> None:
        """Take the server's RateLimit-* counts into account (see `RateGate.observe`)."""
        self.gate.observe(quotas)
