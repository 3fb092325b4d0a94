"""The request journal: every WISEflow request, kept (bounded) for `diagnose X_TRACE_ID`.

The client reports requests synchronously (`record`); rows are buffered in memory and written in one
transaction per `flush`, so a burst of API calls costs one commit rather than one per request.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiosqlite

from service.adapters.store.connection import Store
from service.adapters.wiseflow.records import RequestRecord

log = logging.getLogger("service.journal")
# A cap on the buffer between flushes: diagnosis data is worth less than memory during an outage.
MAX_BUFFER: Final = 5000


class RequestJournal:
    """Buffers `RequestRecord`s and writes them to `request_journal` on `flush`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._buffer: list[RequestRecord] = []
        self.dropped = 0

    def record(self, rec: RequestRecord) -> None:
        """The client's `on_request` hook: cheap, never raises."""
        if len(self._buffer) >= MAX_BUFFER:
            self.dropped += 1
            return
        self._buffer.append(rec)

    async def flush(self) -> int:
        """Write buffered rows in one transaction; returns how many."""
        rows, self._buffer = self._buffer, []
        if not rows:
            return 0
        try:
            async with self._store.transaction() as db:
                await db.executemany(
                    "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt, trace_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.time, r.method, r.path, r.status, r.duration_ms, r.attempt, r.trace_id) for r in rows],
                )
        except aiosqlite.Error:
            log.warning(
                "request journal not written", extra={"event": "journal.flush_failed", "rows": len(rows)}
            )
            return 0
        return len(rows)


async def find_by_trace_id(db: aiosqlite.Connection, trace_id: str) -> list[dict[str, Any]]:
    """Journal rows carrying `trace_id`, oldest first."""
    cursor = await db.execute(
        "SELECT at, method, path, status, duration_ms, attempt, trace_id FROM request_journal"
        " WHERE trace_id = ? ORDER BY id",
        (trace_id,),
    )
    return [dict(row) for row in await cursor.fetchall()]


async def recent(db: aiosqlite.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest journal rows, newest first."""
    cursor = await db.execute(
        "SELECT at, method, path, status, duration_ms, attempt, trace_id FROM request_journal"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(row) for row in await cursor.fetchall()]
