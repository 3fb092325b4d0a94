"""Readiness: "can accept webhooks", decided without ever waiting behind a long write.

Ready means: a webhook secret is configured (without one every webhook is refused with 401), the volume
holding the database has at least SYNC_MIN_FREE_BYTES free (below it commits start failing and webhooks
get 503), and the database is writable and migrated. The writability ping needs the store's write lock,
which a long transaction may hold: the probe waits for it at most `timeout` (under the probe's own
timeoutSeconds) and then answers from the last completed ping. Only one ping is ever in flight, so probes
do not pile up behind a slow commit.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# Under the readinessProbe's timeoutSeconds (2 s in k8s/base/deployment.yaml).
READY_TIMEOUT: Final = 1.0


def free_bytes(path: str) -> int:
    """Bytes available to this (non-root) process on the filesystem holding `path`."""
    directory = Path(path).resolve().parent
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


@dataclass(frozen=True, slots=True)
class Verdict:
    """Ready or not, and why not (one safe sentence: no path, no value)."""

    ready: bool
    reason: str = ""


class Readiness:
    """The checks behind GET /readyz, for one database and one set of settings."""

    def __init__(
        self,
        *,
        database: str,
        has_webhook_secret: bool,
        min_free_bytes: int,
        ping: Callable[[], Coroutine[Any, Any, None]],
        free: Callable[[str], int] = free_bytes,
        timeout: float = READY_TIMEOUT,
    ) -> None:
        self._database = database
        self._has_secret = has_webhook_secret
        self._min_free = min_free_bytes
        self._ping = ping
        self._free = free
        self._timeout = timeout
        self._inflight: asyncio.Task[None] | None = None
        self._last: Verdict | None = None

    async def check(self) -> Verdict:
        """The verdict now; at most `timeout` seconds."""
        if not self._has_secret:
            return Verdict(False, "no webhook secret: every webhook would be refused (WISEFLOW_WEBHOOK_SECRET)")
        if self._min_free > 0 and self._database != ":memory:":
            try:
                free = await asyncio.to_thread(self._free, self._database)
            except OSError as exc:
                return Verdict(False, f"volume not readable: {exc.strerror or type(exc).__name__}")
            if free < self._min_free:
                return Verdict(False, f"volume almost full: {free} bytes free, below SYNC_MIN_FREE_BYTES")
        return await self._writable()

    async def _writable(self) -> Verdict:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._ping(), name="readiness-ping")
            self._inflight.add_done_callback(self._remember)
        try:
            await asyncio.wait_for(asyncio.shield(self._inflight), self._timeout)
        except TimeoutError:
            # A write holds the lock: the last completed ping speaks for the database meanwhile.
            return self._last or Verdict(False, "database busy since startup")
        except Exception as exc:  # StoreError and anything SQLite raises: not ready, never a 500
            return Verdict(False, f"database not usable: {type(exc).__name__}")
        return Verdict(True)

    def _remember(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        self._last = (
            Verdict(True) if exc is None else Verdict(False, f"database not usable: {type(exc).__name__}")
        )

    async def close(self) -> None:
        """Cancel a ping still waiting (shutdown)."""
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            await asyncio.gather(self._inflight, return_exceptions=True)
