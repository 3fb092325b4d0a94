"""The pause WISEflow asked for, made durable before the next request leaves the process.

A 429 pauses the shared limiter, a 503 with Retry-After opens the breaker: both hold every caller in
memory at once. `DurablePause.record` then writes the pause to the `PauseStore` while the request that
drew it is still answering, and `settled` holds every later request until that write has committed, so
a process killed just after the answer leaves the pause to the next process (`WiseflowClient.restore_pause`).
A failed write is logged and does not stop the process: the pause still holds in memory.

A process already running honours another's pause too (`sync --once` beside the service share the
database): `newer` reads the saved pause before each request leaves. One read on the store's read-only
connection is cheap at WISEflow's rates, and it takes no writer lock.
"""

from __future__ import annotations

import asyncio
import logging

from service.core.clock import Clock
from service.core.ports import PauseStore, SavedPause

log = logging.getLogger(__name__)


class DurablePause:
    """Writes each pause to a `PauseStore` (None: nowhere) and tells senders when the writes are done."""

    def __init__(self, store: PauseStore | None, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()
        self.held = 0  # senders waiting in `settled` right now
        # The latest end (Unix seconds) of a pause this process saved or adopted: only a later one is news.
        self.known_until = float("-inf")

    async def record(self, seconds: float, reason: str) -> None:
        """Save a pause of `seconds` from now; returns once committed (a cancelled caller does not stop it)."""
        if self.store is None or seconds <= 0:
            return
        until = self._clock.wall() + seconds
        self.known_until = max(self.known_until, until)
        task = asyncio.ensure_future(self._save(self.store, until, reason))
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

    async def newer(self) -> SavedPause | None:
        """A saved pause that ends later than any this process knows of (another process's), or None."""
        if self.store is None:
            return None
        try:
            saved = await self.store.load()
        except Exception:  # an unreadable database must not stop the requests: logged, like a failed save
            log.exception("could not read WISEflow's saved pause", extra={"event": "wiseflow.pause_not_read"})
            return None
        if saved is None or saved.until <= self.known_until or saved.until <= self._clock.wall():
            return None
        self.known_until = saved.until
        return saved

    @staticmethod
    async def _save(store: PauseStore, until: float, reason: str) -> None:
        try:
            await store.save(until, reason)
        except Exception:  # the database's own error is logged; the pause still holds in memory
            log.exception("could not save WISEflow's pause", extra={"event": "wiseflow.pause_not_saved"})
