"""Reading webhook bodies: what unverified senders may make the endpoint hold, and who gives way.

A body that arrived whole with its headers (every WISEflow event: a few hundred bytes) is verified at once
and holds nothing here, so no number of slow senders can turn it away. A body still on its way holds its
declared size (the body limit, for a chunked one) until it is read or refused. When a new one does not fit,
the reads that have waited longest are cut off (they get 503 busy with `Retry-After`), so a crowd of slow
senders turns itself over while any sender that sends at once gets through.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

# 128 bodies of the default 64 KiB limit: 8 MiB at most held for senders nobody has verified yet.
MAX_UNVERIFIED_BYTES: Final = 128 * 64 * 1024
_CHUNK: Final = 64 * 1024
# One log line per this many seconds at most about senders turned away (each one is counted in metrics).
NOTICE_INTERVAL: Final = 10.0


class TooLarge(Exception):
    """The body is over the size limit."""


class Hold:
    """One body read in progress: its deadline, the bytes it holds, and whether it was cut off for room."""

    __slots__ = ("deadline", "evicted", "size")

    def __init__(self, deadline: asyncio.Timeout, size: int) -> None:
        self.deadline = deadline
        self.size = size
        self.evicted = False


class ReadBudget:
    """The bytes held by body reads in progress, at most `limit` in total, the oldest read giving way."""

    def __init__(self, limit: int = MAX_UNVERIFIED_BYTES) -> None:
        self.limit = limit
        self.held = 0
        self._holds: dict[Hold, None] = {}  # oldest first

    @property
    def waiting(self) -> int:
        """Body reads in progress right now."""
        return len(self._holds)

    def admit(self, deadline: asyncio.Timeout, size: int) -> Hold | None:
        """Hold `size` bytes for a read that ends by `deadline`; None when `size` alone is over the limit.

        To make room, the oldest reads are cut off: their deadline is moved to now, so their read ends
        with `TimeoutError` at the loop's next turn and their `Hold.evicted` says why.
        """
        if size > self.limit:
            return None
        now = asyncio.get_running_loop().time()
        while self.held + size > self.limit:
            oldest = next(iter(self._holds))
            self.release(oldest)
            oldest.evicted = True
            oldest.deadline.reschedule(now)
        hold = Hold(deadline, size)
        self._holds[hold] = None
        self.held += size
        return hold

    def release(self, hold: Hold) -> None:
        """The read of `hold` ended (read, refused or cut off): its bytes are free again. Idempotent."""
        if hold in self._holds:
            del self._holds[hold]
            self.held -= hold.size


class Notice:
    """Says when a rate-limited log line is due: at most one per `interval` seconds, with the count since."""

    def __init__(self, interval: float = NOTICE_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None
        self._since = 0

    def count(self, now: float) -> int | None:
        """Count one at `now` (monotonic seconds): how many to report when a line is due, else None."""
        self._since += 1
        if self._last is not None and now - self._last < self.interval:
            return None
        self._last, counted, self._since = now, self._since, 0
        return counted


def read_buffered(request: web.Request, limit: int) -> bytes:
    """The whole body of a request whose body is already buffered, or `TooLarge` over `limit` bytes."""
    body = request.content.read_nowait()
    if len(body) > limit:
        raise TooLarge
    return body


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, or `TooLarge` as soon as it is known to exceed `limit` bytes (never read past it)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
