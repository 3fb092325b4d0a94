"""Read-only figures for the operator console (`GET /`) and the scrape: latest runs, latest requests, the
oldest grade still waiting for the SIS.

Every query runs on the store's read connection and returns ids, counts, times and statuses only: no
grade, no name, no body, so nothing read here can put personal data on a page.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.adapters.store.connection import Store, fetch_float


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of `sync_runs` as the console shows it."""

    run_id: int
    started_at: float
    ended_at: float | None
    outcome: str  # running | ok | interrupted | failed
    reason: str | None  # one safe line (`core.failures.describe`)
    api_calls: int
    records: int
    changes: int


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


async def latest_runs(store: Store, limit: int = 10) -> list[RunRow]:
    """The newest sync runs first."""
    sql = (
        "SELECT run_id, started_at, ended_at, outcome, reason, api_calls, records, changes"
        " FROM sync_runs ORDER BY run_id DESC LIMIT ?"
    )
    async with store.read() as db, db.execute(sql, (limit,)) as cursor:
        return [RunRow(*row) for row in await cursor.fetchall()]


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
