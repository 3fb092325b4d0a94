"""The pause WISEflow asked for: durable before the next request leaves, the same in every process.

A 429 pauses the shared limiter, a 503 with Retry-After opens the breaker: both hold every caller in
memory at once. `DurablePause.record` then writes the pause to the `PauseStore` while the request that
drew it is still answering, and `settled` holds every later request until that write has committed, so
a process killed just after the answer leaves the pause to the next process (`restore`).
A failed write is logged and does not stop the process: the pause still holds in memory. A read-only
process (`preflight`, `writes=False`) reads the saved pause like any other but never writes one: what
WISEflow tells it holds in its memory only, as if the save had failed.

The saved pause is the truth for every process on the database. `check` reads it before each request
leaves (one read on the store's read-only connection, cheap at WISEflow's rates, no writer lock):

- a pause another process saved that outlasts ours is adopted (`sync --once` beside the service);
- a pause this process holds that an operator cleared since (`pause clear` counts a new generation) is
  lifted: the limiter's pause and the breaker's Retry-After opening end, and sleepers wake.

Each pause held is remembered with the generation it was saved or read under; only a newer generation read
back lifts it. So a pause whose save is still in flight, or failed, is never taken for a cleared one; it
ends on its own. While a pause is held no request leaves to trigger `check`, so `look` (the service's
`pause` loop, and `sleep`) reads the store every CHECK_INTERVAL then, and not at all otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from service.core.breaker import Breaker
from service.core.clock import Clock
from service.core.ports import PauseState, PauseStore, SavedPause

from .limiter import AsyncRateLimiter

log = logging.getLogger(__name__)

# Seconds between reads of the saved pause while one is held: how soon a running process resumes after
# an operator's `pause clear`. One indexed read every two seconds, only during a pause.
CHECK_INTERVAL: Final = 2.0
# The generation of a pause whose save failed: no clear can have covered it, so none lifts it.
UNSAVED: Final = math.inf


@dataclass(slots=True)
class _Hold:
    """A pause this process holds: until when (Unix seconds), and the generation it is saved under."""

    until: float
    generation: float | None  # None while its save is in flight


class DurablePause:
    """The process's side of the saved pause (`store` None: memory only, nothing to read or lift)."""

    def __init__(
        self,
        store: PauseStore | None,
        clock: Clock,
        limiter: AsyncRateLimiter,
        breaker: Breaker,
        on_lift: Callable[[], None] | None = None,
        *,
        writes: bool = True,
    ) -> None:
        self.store = store
        self._writes = writes
        self._clock = clock
        self._limiter = limiter
        self._breaker = breaker
        self._pending: set[asyncio.Task[None]] = set()
        self.held = 0  # senders waiting in `settled` right now
        self.generation = 0  # the newest generation read back
        self._holds: list[_Hold] = []
        self._looked = -math.inf  # loop time of the last read
        self._lifted = asyncio.Event()  # set (and replaced) when a clear lifts a pause: sleepers wake
        self._on_lift = on_lift  # told after a lift (`Signals.pause_lifted`: the inbox worker looks again)
        self.restored: SavedPause | None = None  # the saved pause `restore` found in force (its reason)

    async def record(self, seconds: float, reason: str) -> None:
        """Save a pause of `seconds` from now; returns once committed (a cancelled caller does not stop it)."""
        if self.store is None or seconds <= 0:
            return
        hold = _Hold(self._clock.wall() + seconds, None if self._writes else UNSAVED)
        self._holds.append(hold)
        if not self._writes:
            return
        task = asyncio.ensure_future(self._save(self.store, hold, reason))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        await asyncio.shield(task)

    async def settled(self) -> None:
        """Return once every pause recorded so far is written (at once when none is being written)."""
        while self._pending:
            self.held += 1
            try:
                await asyncio.wait(set(self._pending))
            finally:
                self.held -= 1

    async def restore(self) -> float:
        """At startup: hold every caller for what is left of a saved pause; the seconds left (0.0: none)."""
        state = await self._read()
        if state is None:
            return 0.0
        self.generation = max(self.generation, state.generation)
        remaining = 0.0 if state.pause is None else state.pause.until - self._clock.wall()
        if state.pause is None or remaining <= 0:
            return 0.0
        self._holds.append(_Hold(state.pause.until, state.generation))
        self._limiter.pause(remaining)
        self.restored = state.pause
        log.warning(
            "WISEflow asked a previous process to wait: pausing",
            extra={
                "event": "wiseflow.pause_restored",
                "retry_after": round(remaining, 3),
                "reason": state.pause.reason,
            },
        )
        return remaining

    async def check(self) -> bool:
        """Make the pause held the saved one (see the module docstring); True when a longer one was adopted."""
        await self.settled()  # a pause WISEflow just asked for is on disk before anything is compared
        self._looked = asyncio.get_running_loop().time()
        state = await self._read()
        if state is None:
            return False
        self.generation = max(self.generation, state.generation)
        now = self._clock.wall()
        self._holds = [hold for hold in self._holds if hold.until > now]
        if any(hold.generation is not None and hold.generation < self.generation for hold in self._holds):
            self._lift(now)
        return self._adopt(state, now)

    def holding(self) -> bool:
        """True while a pause this process holds has time left."""
        now = self._clock.wall()
        return any(hold.until > now for hold in self._holds)

    async def look(self) -> None:
        """While a pause is held, read the saved one at most every CHECK_INTERVAL (an operator may clear it)."""
        if self.store is None or not self.holding():
            return
        if asyncio.get_running_loop().time() - self._looked >= CHECK_INTERVAL:
            await self.check()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less: until a clear lifts a pause (looked for every CHECK_INTERVAL meanwhile)."""
        loop = asyncio.get_running_loop()
        lifted = self._lifted
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lifted.wait(), min(left, CHECK_INTERVAL))
                return
            await self.look()

    def _lift(self, now: float) -> None:
        """An operator cleared what we hold: keep only pauses saved since, in the limiter; wake everyone."""
        cleared = [h for h in self._holds if h.generation is not None and h.generation < self.generation]
        lifted = max(hold.until for hold in cleared) - now
        self._holds = [hold for hold in self._holds if hold not in cleared]
        self._limiter.lift()
        self._breaker.lift()
        left = max((hold.until for hold in self._holds), default=now) - now
        if left > 0:  # a pause saved after the clear (ours, or in flight) still holds
            self._limiter.pause(left)
        log.warning(
            "WISEflow's pause was cleared by an operator: resuming",
            extra={
                "event": "wiseflow.pause_cleared",
                "lifted": round(lifted, 3),
                "still_paused": round(max(left, 0.0), 3),
                "generation": self.generation,
            },
        )
        self._lifted.set()
        self._lifted = asyncio.Event()
        if self._on_lift is not None:
            self._on_lift()

    def _adopt(self, state: PauseState, now: float) -> bool:
        """Hold a saved pause that ends later than any we hold; True when the limiter now waits longer."""
        saved = state.pause
        if saved is None or state.generation < self.generation or saved.until <= now:
            return False  # (an older generation: a read from before a clear we already saw)
        if saved.until <= max((hold.until for hold in self._holds), default=-math.inf):
            return False
        self._holds.append(_Hold(saved.until, state.generation))
        remaining = saved.until - now
        if remaining <= self._limiter.gate.pause_remaining():
            return False
        self._limiter.pause(remaining)
        log.warning(
            "WISEflow asked another process to wait: pausing",
            extra={
                "event": "wiseflow.pause_adopted",
                "retry_after": round(remaining, 3),
                "reason": saved.reason,
            },
        )
        return True

    async def _read(self) -> PauseState | None:
        if self.store is None:
            return None
        try:
            return await self.store.current()
        except Exception:  # an unreadable database must not stop the requests: logged, like a failed save
            log.exception("could not read WISEflow's saved pause", extra={"event": "wiseflow.pause_not_read"})
            return None

    @staticmethod
    async def _save(store: PauseStore, hold: _Hold, reason: str) -> None:
        try:
            hold.generation = await store.save(hold.until, reason)
        except Exception:  # the database's own error is logged; the pause still holds in memory
            hold.generation = UNSAVED
            log.exception("could not save WISEflow's pause", extra={"event": "wiseflow.pause_not_saved"})
