"""The request journal: recent WISEflow requests (time, method, path, status, duration, attempt, X-Trace-Id,
and the seconds a Retry-After asked for).

The client's `on_request` hook is synchronous and fires for every request, so `JournalWriter.record`
only appends to a buffer; rows are written in batches (`flush`), one transaction per batch instead of
one per request. The table keeps the newest 10,000 rows (a trigger trims it). No query string, token or
body is ever stored: paths only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

from service.adapters.store.connection import Store, StoreError

log = logging.getLogger("service.store")


class RequestLike(Protocol):
    """What a journal row needs (the WISEflow client's `RequestRecord` has it)."""

    @property
    def time(self) -> float: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def retry_after(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One stored request."""

    at: float
    method: str
    path: str
    status: int | None
    duration_ms: float
    attempt: int
    trace_id: str | None


class JournalWriter:
    """Buffers request records and writes them in batches; `record` is the client's `on_request` hook."""

    def __init__(self, store: Store, batch: int = 200) -> None:
        self._store = store
        self._batch = batch
        self._buffer: list[tuple[Any, ...]] = []
        self._flushing: asyncio.Task[int] | None = None

    def record(self, request: RequestLike) -> None:
        """Buffer one request; a full buffer schedules a flush on the running loop."""
        path = request.path.split("?", 1)[0]
        self._buffer.append(
            (
                request.time,
                request.method,
                path,
                request.status,
                request.duration_ms,
                request.attempt,
                request.trace_id,
                request.retry_after,
            )
        )
        if len(self._buffer) >= self._batch and (self._flushing is None or self._flushing.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a synchronous caller): the next flush() writes it
            self._flushing = loop.create_task(self.flush())

    async def flush(self) -> int:
        """Write every buffered record; returns how many."""
        rows, self._buffer = self._buffer, []
        if not rows:
            return 0
        try:
            # One hop to the writer's thread for the whole transaction: per statement, each hop waits a turn
            # of a loop that may be answering webhooks, and holds the writer from their group commit meanwhile.
            await self._store.write(_insert_journal, rows)
        except StoreError:  # the store raises it from any driver error
            # Diagnostics must never break a sync: drop this batch and say so.
            log.warning("request journal batch dropped", extra={"event": "journal.dropped", "rows": len(rows)})
            return 0
        return len(rows)

    async def close(self) -> None:
        """Wait for a scheduled flush, then write what is left."""
        if self._flushing is not None:
            await self._flushing
        await self.flush()


_JOURNAL_COLUMNS = "at, method, path, status, duration_ms, attempt, trace_id"


def _insert_journal(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    """The buffered records, on the writer's thread inside `Store.write`'s transaction."""
    conn.executemany(
        "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt, trace_id, retry_after)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


_RUN_COLUMNS = ("run_id", "started_at", "ended_at", "outcome", "reason", "api_calls", "records", "changes")


async def find_by_trace(store: Store, trace_id: str) -> list[JournalRow]:
    """Every journalled request with this X-Trace-Id, oldest first (`diagnose`)."""
    sql = f"SELECT {_JOURNAL_COLUMNS} FROM request_journal WHERE trace_id = ? ORDER BY id"  # noqa: S608 - constant columns
    async with store.read() as db, db.execute(sql, (trace_id,)) as cursor:
        return [JournalRow(*row) for row in await cursor.fetchall()]


async def around(store: Store, at: float, window: float, trace_id: str, limit: int = 50) -> list[JournalRow]:
    """Other journalled requests within `window` seconds of `at` (those without `trace_id`), oldest first."""
    sql = (
        f"SELECT {_JOURNAL_COLUMNS} FROM request_journal"  # noqa: S608 - constant columns
        " WHERE at BETWEEN ? AND ? AND (trace_id IS NULL OR trace_id != ?) ORDER BY id LIMIT ?"
    )
    async with store.read() as db, db.execute(sql, (at - window, at + window, trace_id, limit)) as cursor:
        return [JournalRow(*row) for row in await cursor.fetchall()]


async def run_at(store: Store, at: float) -> dict[str, Any] | None:
    """The sync run that was going on at `at` (its id, times, outcome, counts), or None."""
    sql = (
        f"SELECT {', '.join(_RUN_COLUMNS)} FROM sync_runs"  # noqa: S608 - constant columns
        " WHERE started_at <= ? AND (ended_at IS NULL OR ended_at >= ?) ORDER BY run_id DESC LIMIT 1"
    )
    async with store.read() as db, db.execute(sql, (at, at)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else dict(zip(_RUN_COLUMNS, tuple(row), strict=True))
