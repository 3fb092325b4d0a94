"""Figures read from the database for reports: the certification answers (`certify`).

`unit.figures` of a read (`SqliteUnitOfWork.read()`): on the store's read connection, so a report never
sees a transaction that is still open.

    async with SqliteUnitOfWork(store).read() as unit:
        figures = await unit.figures.stored()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiosqlite

from service.adapters.store import retention
from service.adapters.store.connection import fetch_int
from service.adapters.store.inbox_queue import DELIVERIES
from service.adapters.store.runs import SqliteRuns
from service.core.pause_figures import Exchange, pause_figures


@dataclass(slots=True)
class StoredFigures:
    """What the tables say the service has done."""

    runs: int = 0
    # api_calls of every successful run, oldest first: each the run's requests counted on the wire.
    ok_run_calls: list[int] = field(default_factory=list)
    # Requests of successful runs by route, summed (`GET /flow/{id}/assessments` -> n).
    requests_by_route: dict[str, int] = field(default_factory=dict)
    # Journalled requests by status (0: no answer).
    by_status: dict[int, int] = field(default_factory=dict)
    events: int = 0
    deliveries: int = 0
    dead_letters: int = 0
    grades_delivered: int = 0
    grades_pending: int = 0
    last_success_at: float | None = None
    # Journalled requests by (method, path, status; 0: no answer): the last 10,000 that left the process.
    journal: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # The shortest time from a 429's answer to the next request sent (None: no 429 journalled).
    wait_after_429: float | None = None
    # Journalled 429/503 answers with a Retry-After, and those after which nothing was sent before it ended.
    retry_after_answers: int = 0
    retry_after_honoured: int = 0


class SqliteFigures:
    """The report figures of one read (`unit.figures`)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def stored(self) -> StoredFigures:
        """Every figure of `StoredFigures`, with what retention folded away added back."""
        db, f = self._db, StoredFigures()
        f.runs = await _count(db, "SELECT COUNT(*) FROM sync_runs")
        async with db.execute("SELECT api_calls FROM sync_runs WHERE outcome = 'ok' ORDER BY run_id") as cursor:
            f.ok_run_calls = [int(row[0]) for row in await cursor.fetchall()]
        async with db.execute(
            "SELECT r.route, SUM(r.requests) FROM run_requests r JOIN sync_runs s USING (run_id)"
            " WHERE s.outcome = 'ok' GROUP BY r.route ORDER BY r.route"
        ) as cursor:
            f.requests_by_route = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        async with db.execute("SELECT COALESCE(status, 0), COUNT(*) FROM request_journal GROUP BY 1") as cursor:
            f.by_status = {int(row[0]): int(row[1]) for row in await cursor.fetchall()}
        f.events = await _count(db, "SELECT COUNT(*) FROM inbox")
        f.deliveries = await _count(db, DELIVERIES)
        f.dead_letters = await _count(db, "SELECT COUNT(*) FROM inbox WHERE status = 'dead'")
        f.grades_delivered = await _count(db, "SELECT COUNT(*) FROM outbox WHERE status = 'delivered'")
        f.grades_pending = await _count(db, "SELECT COUNT(*) FROM outbox WHERE status != 'delivered'")
        f.last_success_at = await SqliteRuns(db).last_success_at()
        async with db.execute(
            "SELECT method, path, COALESCE(status, 0), COUNT(*) FROM request_journal GROUP BY 1, 2, 3"
        ) as cursor:
            f.journal = {(str(r[0]), str(r[1]), int(r[2])): int(r[3]) for r in await cursor.fetchall()}
        async with db.execute(
            "SELECT at, duration_ms, COALESCE(status, 0), retry_after FROM request_journal ORDER BY at"
        ) as cur:
            rows = await cur.fetchall()
        exchanges = [
            Exchange(float(r[0]), float(r[1]), int(r[2]), None if r[3] is None else float(r[3])) for r in rows
        ]
        pauses = pause_figures(exchanges)
        f.wait_after_429 = pauses.shortest_wait_after_429
        f.retry_after_answers, f.retry_after_honoured = pauses.retry_after_answers, pauses.retry_after_honoured
        _add_pruned(f, *await retention.pruned_figures(db))
        return f


def _add_pruned(f: StoredFigures, totals: dict[str, int], calls: list[int], routes: dict[str, int]) -> None:
    """Add back what retention folded away; the first successful run is never pruned, so it stays first."""
    f.runs += totals.get("runs", 0)
    f.events += totals.get("inbox_events", 0)
    f.deliveries += totals.get("inbox_deliveries", 0)
    f.ok_run_calls = f.ok_run_calls[:1] + calls + f.ok_run_calls[1:]
    for route, requests in routes.items():
        f.requests_by_route[route] = f.requests_by_route.get(route, 0) + requests


async def _count(db: aiosqlite.Connection, sql: str) -> int:
    return await fetch_int(db, sql) or 0
