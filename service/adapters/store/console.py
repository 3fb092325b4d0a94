"""Read-only figures for the operator console (`GET /`) and the scrape: the latest WISEflow requests, the
oldest grade still waiting for the SIS (the runs come from the runs repository, as `runs` reads them).

Every query runs on the store's read connection and returns ids, counts, times and statuses only: no
grade, no name, no body, so nothing read here can put personal data on a page.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.adapters.store.connection import Store, fetch_float


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One journalled WISEflow request: the path only (never a query string), status, duration, trace id."""

    at: float
    method: str
    path: str
    status: int | None  # None: no answer (timeout, refused)
    duration_ms: float
    attempt: int
    trace_id: str | None


async def latest_requests(store: Store, limit: int = 15) -> list[RequestRow]:
    """The newest journalled WISEflow requests first (the journal is flushed about once a second)."""
    sql = (
        "SELECT at, method, path, status, duration_ms, attempt, trace_id"
        " FROM request_journal ORDER BY id DESC LIMIT ?"
    )
    async with store.read() as db, db.execute(sql, (limit,)) as cursor:
        return [RequestRow(*row) for row in await cursor.fetchall()]


async def oldest_pending_grade_at(store: Store) -> float | None:
    """When the oldest grade version still waiting for the SIS was queued (Unix time), or None."""
    async with store.read() as db:
        return await fetch_float(db, "SELECT MIN(created_at) FROM outbox WHERE status = 'pending'")
