"""Repository of the outbox (`unit.outbox`): grade versions on their way to the SIS, in and out by one door.

`enqueue` runs in the transaction that wrote the grade change, so a version is in the outbox if and only
if it is in the mirror, and so does a grade's withdrawal (an explicit record, `GradeVersion.sink_payload`).
The unique idempotency key makes a re-enqueue of the same version a no-op. The
deliverer takes `due` rows and marks each delivered, failed, refused or dead; an operator lists the dead
ones and replays them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import aiosqlite
import orjson

from service.adapters.store.connection import fetch_float, fetch_int, fetch_text
from service.core.records import WITHDRAWAL_PREFIX, GradeVersion
from service.core.store_ports import DeadLetter, OutboxItem, Replay

_INSERT: Final = (
    "INSERT OR IGNORE INTO outbox (idempotency_key, flow_id, participant_id, payload, created_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
# Due pending rows, at most one per participant: its oldest pending version.
_DUE: Final = (
    "SELECT o.id, o.idempotency_key, o.payload, o.attempts, o.refusals FROM outbox o"
    " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
    " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.flow_id = o.flow_id"
    " AND e.participant_id = o.participant_id AND e.status = 'pending' AND e.id < o.id)"
    " ORDER BY o.id LIMIT ?"
)
# `?1` is the row id, or NULL for every dead row. A dead row is superseded when a later row of its
# participant is queued or delivered: replaying it would put an older grade in the SIS after the newer.
_COUNT_SUPERSEDED: Final = (
    "SELECT count(*) FROM outbox o WHERE o.status = 'dead' AND (?1 IS NULL OR o.id = ?1)"
    " AND EXISTS (SELECT 1 FROM outbox n WHERE n.flow_id = o.flow_id AND n.participant_id = o.participant_id"
    " AND n.id > o.id AND n.status != 'dead')"
)
_REQUEUE: Final = (
    "UPDATE outbox SET status = 'pending', refusals = 0, next_attempt_at = 0"
    " WHERE status = 'dead' AND (?1 IS NULL OR id = ?1)"
    " AND NOT EXISTS (SELECT 1 FROM outbox n WHERE n.flow_id = outbox.flow_id"
    " AND n.participant_id = outbox.participant_id AND n.id > outbox.id AND n.status != 'dead')"
)


def _row(key: str, version: GradeVersion, now: float) -> tuple[object, ...]:
    payload = orjson.dumps(version.sink_payload()).decode()
    return (key, version.flow_id, version.participant_id, payload, now)


class SqliteOutbox:
    """`unit.outbox` on one connection (see the module docstring)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def enqueue(self, versions: Sequence[GradeVersion], now: float) -> int:
        """Queue these grade versions; an ungraded one as its grade's withdrawal; returns rows added.

        A version that is already its participant's latest row is not queued again (a re-read is a no-op).
        A version seen before but superseded since (B -> C -> B) is queued again under a key of its own,
        `<key>-<n>`, so the SIS, which holds C, receives B again instead of dropping it as a repeat. A
        withdrawal goes only where a grade went before (a participant with rows, the latest not a withdrawal).
        """
        if not versions:  # nothing changed: no hop to the writer's thread
            return 0
        latest = await self._latest_keys({v.flow_id for v in versions})
        first: list[GradeVersion] = []  # participants with no row yet: the common case, one batch
        added = 0
        for version in versions:
            key = version.sink_key
            previous = latest.get((version.flow_id, version.participant_id))
            if previous is None and not version.is_graded:
                continue  # no grade was ever queued for this participant: nothing to withdraw
            if previous is None:
                first.append(version)
            elif not previous[0].startswith(key):  # else: the participant's latest version already
                if not await self._insert(key, version, now):
                    await self._insert(f"{key}-{previous[1] + 1}", version, now)
                added += 1
        before = self._db.total_changes
        await self._db.executemany(_INSERT, [_row(v.sink_key, v, now) for v in first])
        return added + self._db.total_changes - before

    async def _latest_keys(self, flow_ids: set[int]) -> dict[tuple[int, int], tuple[str, int]]:
        """(flowId, participantId) -> (key of the participant's latest outbox row, how many rows it has)."""
        latest: dict[tuple[int, int], tuple[str, int]] = {}
        for flow_id in flow_ids:
            async with self._db.execute(
                "SELECT participant_id, idempotency_key, max(id), count(*) FROM outbox WHERE flow_id = ?"
                " GROUP BY participant_id",
                (flow_id,),
            ) as cursor:
                async for row in cursor:
                    latest[(flow_id, int(row[0]))] = (str(row[1]), int(row[3]))
        return latest

    async def _insert(self, key: str, version: GradeVersion, now: float) -> bool:
        """Insert one row under `key`; False when the key is taken (that version was queued before)."""
        cursor = await self._db.execute(_INSERT, _row(key, version, now))
        return cursor.rowcount > 0

    async def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Due pending rows, oldest first, at most one per participant: the oldest pending version.

        A participant's versions go out in the order they were seen, so a retried older grade can never
        land after (and overwrite) a newer one in the SIS.
        """
        async with self._db.execute(_DUE, (now, limit)) as cursor:
            rows = await cursor.fetchall()
        return [OutboxItem(int(r[0]), str(r[1]), orjson.loads(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def next_due_at(self) -> float | None:
        """When the earliest pending row becomes due, or None when nothing is pending."""
        return await fetch_float(self._db, "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'")

    async def mark_delivered(self, item_id: int, now: float) -> None:
        """The sink answered 2xx."""
        await self._db.execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?,"
            " last_error = NULL WHERE id = ?",
            (now, item_id),
        )

    async def mark_failed(self, item_id: int, next_attempt_at: float, error: str) -> None:
        """The SIS was unwell (no answer, 408, 429, 5xx): count the attempt and schedule the next one."""
        await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (next_attempt_at, error[:500], item_id),
        )

    async def mark_refused(self, item_id: int, next_attempt_at: float, error: str) -> None:
        """The SIS refused this record (a 4xx): count the refusal and schedule the next try."""
        await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, refusals = refusals + 1, next_attempt_at = ?,"
            " last_error = ? WHERE id = ?",
            (next_attempt_at, error[:500], item_id),
        )

    async def mark_dead(self, item_id: int, error: str) -> None:
        """The SIS refused this record for good: out of the queue, so the participant's newer versions go."""
        await self._db.execute(
            "UPDATE outbox SET status = 'dead', attempts = attempts + 1, refusals = refusals + 1,"
            " last_error = ? WHERE id = ?",
            (error[:500], item_id),
        )

    async def counts(self) -> dict[str, int]:
        """Rows by status (pending: queued, also while no sink is set; delivered; dead)."""
        async with self._db.execute("SELECT status, count(*) FROM outbox GROUP BY status") as cursor:
            return {str(r[0]): int(r[1]) for r in await cursor.fetchall()}

    async def withdrawals(self) -> int:
        """Withdrawals ever queued (rows are never deleted, and their keys survive retention)."""
        # A range of the unique key's index (every key starting with the prefix), not a scan: read per scrape.
        sql = "SELECT count(*) FROM outbox WHERE idempotency_key >= ? AND idempotency_key < ?"
        end = WITHDRAWAL_PREFIX[:-1] + chr(ord(WITHDRAWAL_PREFIX[-1]) + 1)
        return await fetch_int(self._db, sql, (WITHDRAWAL_PREFIX, end)) or 0

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead rows, oldest first (without the grade: a listing shows no personal data)."""
        sql = (
            "SELECT id, flow_id, participant_id, attempts, last_error, created_at FROM outbox"
            " WHERE status = 'dead' ORDER BY id LIMIT ?"
        )
        async with self._db.execute(sql, (limit,)) as cursor:
            return [
                DeadLetter(int(r[0]), "grade", int(r[1]), int(r[2]), int(r[3]), r[4], float(r[5]))
                for r in await cursor.fetchall()
            ]

    async def replay(self, item_id: int | None) -> Replay:
        """Re-queue the dead row `item_id` (None: every dead row) with a fresh count of refusals, unless a
        newer version of its participant is queued or delivered (then it stays dead, counted superseded)."""
        status: str | None = "dead"
        if item_id is not None:
            status = await fetch_text(self._db, "SELECT status FROM outbox WHERE id = ?", (item_id,))
        async with self._db.execute(_COUNT_SUPERSEDED, (item_id,)) as cursor:
            counted = await cursor.fetchone()
        cursor = await self._db.execute(_REQUEUE, (item_id,))
        return Replay(cursor.rowcount, 0 if counted is None else int(counted[0]), status)
