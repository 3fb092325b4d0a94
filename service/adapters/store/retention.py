"""Retention (SYNC_RETAIN_DAYS): delete what is older than the cutoff, in small transactions.

What goes, and what stays on purpose:
- inbox: processed events (`done`, `unknown`) and their delivery ids, and the inbox worker's record of a
  refresh (`inbox_refreshes`) older than the cutoff: an event older than that is long answered. Dead
  letters stay until an operator replays them.
- outbox: a delivered row keeps its idempotency key (the history that tells a re-sent older grade from a
  repeat, `B -> C -> B`) but loses its payload and last error, the bulk of the row.
- request_journal: rows older than the cutoff (it is also bounded to its newest 10,000 rows).
- sync_runs (and their run_requests): finished runs, except the first and the newest successful ones
  (certify's first-full figure and the staleness alert's last success).
What certify reads survives in aggregates (`pruned_totals`, `pruned_run_calls`, `pruned_route_requests`):
run and event counts, the request count of every pruned successful run (as a histogram: median, p95 and
max stay exact), and requests by route. `unit.figures.stored()` adds them back.
Each method deletes at most `limit` rows; the retention loop (`service.sync.retention`) gives each its own
short transaction, so webhooks commit in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

BATCH = 500


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows removed (or emptied, for the outbox) by one pass over every table."""

    inbox: int = 0
    outbox: int = 0
    journal: int = 0
    runs: int = 0

    @property
    def total(self) -> int:
        """All rows touched: 0 means nothing older than the cutoff is left to prune."""
        return self.inbox + self.outbox + self.journal + self.runs


class SqliteRetention:
    """`unit.retention`: each method prunes one batch of one table in the caller's transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def prune_inbox(self, cutoff: float, limit: int) -> int:
        """Processed events older than `cutoff` with their deliveries, and refresh records; the events."""
        db = self._db
        await db.execute("DELETE FROM inbox_refreshes WHERE began_at < ?", (cutoff,))
        event_ids = await _ids(
            db,
            "SELECT id FROM inbox WHERE status IN ('done', 'unknown')"
            " AND COALESCE(processed_at, received_at) < ? ORDER BY id LIMIT ?",
            (cutoff, limit),
        )
        if not event_ids:
            return 0
        marks = _marks(event_ids)
        cursor = await db.execute(f"DELETE FROM inbox_deliveries WHERE event_id IN ({marks})", event_ids)  # noqa: S608 - placeholders only
        redeliveries = max(cursor.rowcount, 0)
        cursor = await db.execute(f"DELETE FROM inbox WHERE id IN ({marks})", event_ids)  # noqa: S608 - placeholders only
        events = max(cursor.rowcount, 0)
        await _add_total(db, "inbox_events", events)
        await _add_total(db, "inbox_deliveries", events + redeliveries)  # each event came in a delivery
        return len(event_ids)

    async def strip_outbox(self, cutoff: float, limit: int) -> int:
        """Delivered rows older than `cutoff` lose payload and last error (their keys stay); the rows."""
        cursor = await self._db.execute(
            "UPDATE outbox SET payload = '', last_error = NULL WHERE id IN (SELECT id FROM outbox"
            " WHERE status = 'delivered' AND delivered_at < ? AND payload != '' ORDER BY id LIMIT ?)",
            (cutoff, limit),
        )
        return max(cursor.rowcount, 0)

    async def prune_journal(self, cutoff: float, limit: int) -> int:
        """Journalled requests older than `cutoff`; the rows."""
        cursor = await self._db.execute(
            "DELETE FROM request_journal WHERE id IN"
            " (SELECT id FROM request_journal WHERE at < ? ORDER BY id LIMIT ?)",
            (cutoff, limit),
        )
        return max(cursor.rowcount, 0)

    async def prune_runs(self, cutoff: float, limit: int) -> int:
        """Finished runs older than `cutoff` but the first and newest ok ones, folded into aggregates."""
        db = self._db
        run_ids = await _ids(
            db,
            "SELECT run_id FROM sync_runs WHERE outcome != 'running' AND ended_at < ?"
            " AND run_id NOT IN (SELECT MIN(run_id) FROM sync_runs WHERE outcome = 'ok'"
            " UNION SELECT MAX(run_id) FROM sync_runs WHERE outcome = 'ok') ORDER BY run_id LIMIT ?",
            (cutoff, limit),
        )
        if not run_ids:
            return 0
        marks = _marks(run_ids)
        ok = f"run_id IN ({marks}) AND outcome = 'ok'"
        await db.execute(
            "INSERT INTO pruned_run_calls (api_calls, runs)"  # noqa: S608 - placeholders only
            f" SELECT api_calls, COUNT(*) FROM sync_runs WHERE {ok} GROUP BY api_calls"
            " ON CONFLICT (api_calls) DO UPDATE SET runs = runs + excluded.runs",
            run_ids,
        )
        await db.execute(
            "INSERT INTO pruned_route_requests (route, requests)"  # noqa: S608 - placeholders only
            " SELECT route, SUM(requests) FROM run_requests WHERE run_id IN"
            f" (SELECT run_id FROM sync_runs WHERE {ok}) GROUP BY route"
            " ON CONFLICT (route) DO UPDATE SET requests = requests + excluded.requests",
            run_ids,
        )
        await db.execute(f"DELETE FROM run_requests WHERE run_id IN ({marks})", run_ids)  # noqa: S608 - placeholders only
        cursor = await db.execute(f"DELETE FROM sync_runs WHERE run_id IN ({marks})", run_ids)  # noqa: S608 - placeholders only
        await _add_total(db, "runs", max(cursor.rowcount, 0))
        return len(run_ids)


async def _ids(db: aiosqlite.Connection, sql: str, params: tuple[object, ...]) -> list[int]:
    async with db.execute(sql, params) as cursor:
        return [int(row[0]) for row in await cursor.fetchall()]


async def _add_total(db: aiosqlite.Connection, name: str, value: int) -> None:
    if value:
        await db.execute(
            "INSERT INTO pruned_totals (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, value),
        )


def _marks(values: list[int]) -> str:
    return ", ".join("?" for _ in values)


async def pruned_figures(db: aiosqlite.Connection) -> tuple[dict[str, int], list[int], dict[str, int]]:
    """What pruning folded away: totals by name, pruned successful runs' api_calls, requests by route."""
    async with db.execute("SELECT name, value FROM pruned_totals") as cursor:
        totals = {str(r[0]): int(r[1]) for r in await cursor.fetchall()}
    calls: list[int] = []
    async with db.execute("SELECT api_calls, runs FROM pruned_run_calls ORDER BY api_calls") as cursor:
        for api_calls, runs in await cursor.fetchall():
            calls.extend([int(api_calls)] * int(runs))
    async with db.execute("SELECT route, requests FROM pruned_route_requests") as cursor:
        routes = {str(r[0]): int(r[1]) for r in await cursor.fetchall()}
    return totals, calls, routes
