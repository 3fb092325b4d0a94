"""Repository of the outbox: grade versions waiting for delivery to the SIS.

`enqueue` runs in the transaction that wrote the grade change, so a version is in the outbox if and only
if it is in the mirror. The unique idempotency key makes a re-enqueue of the same version a no-op.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from service.core.records import GradeVersion


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row waiting for delivery."""

    id: int
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int


async def enqueue(db: aiosqlite.Connection, versions: Sequence[GradeVersion], now: float) -> int:
    """Add these grade versions (graded ones only); an already queued version is ignored. Returns rows added."""
    before = db.total_changes
    await db.executemany(
        "INSERT OR IGNORE INTO outbox (idempotency_key, flow_id, participant_id, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (
                v.idempotency_key,
                v.flow_id,
                v.participant_id,
                json.dumps(v.payload(), separators=(",", ":")),
                now,
            )
            for v in versions
            if v.is_graded
        ],
    )
    return db.total_changes - before


async def due_items(db: aiosqlite.Connection, now: float, limit: int = 100) -> list[OutboxItem]:
    """Due pending rows, oldest first, at most one per participant: the oldest pending version.

    A participant's versions go out in the order they were seen, so a retried older grade can never
    land after (and overwrite) a newer one in the SIS.
    """
    sql = (
        "SELECT o.id, o.idempotency_key, o.payload, o.attempts FROM outbox o"
        " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.flow_id = o.flow_id"
        " AND e.participant_id = o.participant_id AND e.status = 'pending' AND e.id < o.id)"
        " ORDER BY o.id LIMIT ?"
    )
    async with db.execute(sql, (now, limit)) as cursor:
        rows = await cursor.fetchall()
    return [OutboxItem(int(r[0]), str(r[1]), json.loads(r[2]), int(r[3])) for r in rows]


async def mark_delivered(db: aiosqlite.Connection, item_id: int, now: float) -> None:
    """The sink answered 2xx."""
    await db.execute(
        "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL"
        " WHERE id = ?",
        (now, item_id),
    )


async def mark_failed(db: aiosqlite.Connection, item_id: int, next_attempt_at: float, error: str) -> None:
    """The sink refused or failed: count the attempt and schedule the next one."""
    await db.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (next_attempt_at, error[:500], item_id),
    )


async def status_counts(db: aiosqlite.Connection) -> dict[str, int]:
    """How many rows are in each status (for /status, metrics and the summary line)."""
    async with db.execute("SELECT status, count(*) FROM outbox GROUP BY status") as cursor:
        return {str(r[0]): int(r[1]) for r in await cursor.fetchall()}


async def next_due_at(db: aiosqlite.Connection) -> float | None:
    """When the earliest pending row becomes due, or None when nothing is pending."""
    async with db.execute("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'") as cursor:
        row = await cursor.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def iter_keys(db: aiosqlite.Connection, status: str) -> AsyncIterator[str]:
    """The idempotency keys of rows in `status` (for checks and tests)."""
    async with db.execute(
        "SELECT idempotency_key FROM outbox WHERE status = ? ORDER BY id", (status,)
    ) as cursor:
        async for row in cursor:
            yield str(row[0])
