"""Repository of the inbox as the worker's queue (`unit.inbox`): pending events, done / covered / failed /
deferred, dead letters and their replay, and the figures catch-up and /status read.

The receiver commits events apart, through `inbox.Inbox`'s group commit; this side only reads and updates
them, on the connection of one unit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import aiosqlite

from service.adapters.store.connection import WriterTurn, fetch_float, fetch_int, fetch_text
from service.core.store_ports import Cover, DeadLetter, InboxRow, Replay

_COLUMNS: Final = (
    "id, sequence, event, flow_id, participant_id, event_timestamp, received_at, status, attempts, "
    "next_attempt_at, last_error, processed_at, receipt"
)
# Pending and due, and before the first not-yet-due event of its flow (the blocked head), if any. The
# blocked heads are few (the events waiting for a retry), so they are found once, through inbox_pending.
_WORKABLE: Final = (
    "WITH blocked AS (SELECT flow_id, MIN(id) AS head FROM inbox"  # noqa: S608 - constant columns
    " WHERE status = 'pending' AND next_attempt_at > ? GROUP BY flow_id)"
    f" SELECT {', '.join('i.' + c.strip() for c in _COLUMNS.split(','))} FROM inbox i"
    " LEFT JOIN blocked b ON b.flow_id = i.flow_id"
    " WHERE i.status = 'pending' AND i.next_attempt_at <= ? AND (b.head IS NULL OR i.id < b.head)"
    " ORDER BY i.id LIMIT ?"
)
# The pending events a recorded refresh answers (received by the time it began), at most `limit` of them a
# statement (any: the rest go with the next). The pending events outside, each refresh looked up by its
# key: no index on the inbox by flow, which would cost every group commit a page per flow it touches.
_ANSWERED: Final = (
    "UPDATE inbox SET status = 'done', processed_at = ?, last_error = NULL"
    " WHERE id IN (SELECT i.id FROM inbox i CROSS JOIN inbox_refreshes r"
    " ON r.flow_id = i.flow_id AND r.event = i.event"
    " WHERE i.status = 'pending' AND i.received_at <= r.began_at LIMIT ?) RETURNING received_at"
)
# Every delivery: each event came in one (its row), and each redelivery has a row of its own.
DELIVERIES: Final = "SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM inbox_deliveries)"
_LAST_DELIVERY: Final = (
    "SELECT MAX(at) FROM (SELECT * FROM (SELECT received_at AS at FROM inbox ORDER BY id DESC LIMIT 1)"
    " UNION ALL SELECT * FROM (SELECT received_at AS at FROM inbox_deliveries ORDER BY rowid DESC LIMIT 1))"
)
# The latest refresh of a flow and kind of event: kept, never moved back (see `record_refreshes`).
_REFRESHED: Final = (
    "INSERT INTO inbox_refreshes (flow_id, event, began_at) VALUES (?, ?, ?)"
    " ON CONFLICT (flow_id, event) DO UPDATE SET began_at = MAX(began_at, excluded.began_at)"
)


def _answered(conn: sqlite3.Connection, now: float, limit: int) -> list[float]:
    """`SqliteInbox.mark_answered`'s statement, on the connection's thread inside the unit's transaction."""
    return [float(row[0]) for row in conn.execute(_ANSWERED, (now, limit))]


def _marks(values: Sequence[object]) -> str:
    """`?, ?, ...` for `values` (placeholders only: never a value in the SQL text)."""
    return ", ".join("?" for _ in values)


class SqliteInbox:
    """`unit.inbox` on one connection (see the module docstring)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def pending(self, now: float, limit: int = 500) -> list[InboxRow]:
        """The events to work on at `now`, in order of arrival: pending, due, and not behind a waiting one.

        An event waits behind the first event of its flow that is still waiting for its retry (order per
        flow), so a batch never fills up with events that cannot be worked on while other flows' wait.
        """
        async with self._db.execute(_WORKABLE, (now, now, limit)) as cursor:
            return [InboxRow(*tuple(r)) for r in await cursor.fetchall()]

    async def next_retry_at(self, after: float) -> float | None:
        """When the earliest pending event waiting for a retry after `after` is due, or None when none waits."""
        sql = "SELECT MIN(next_attempt_at) FROM inbox WHERE status = 'pending' AND next_attempt_at > ?"
        return await fetch_float(self._db, sql, (after,))

    async def refreshed_at(self, flow_id: int, events: Sequence[str]) -> float | None:
        """When the latest refresh of `flow_id` answering `events` (one refresh kind) began; None: never."""
        if not events:
            return None
        sql = (
            "SELECT MAX(began_at) FROM inbox_refreshes WHERE flow_id = ?"  # noqa: S608 - placeholders only
            f" AND event IN ({_marks(events)})"
        )
        return await fetch_float(self._db, sql, (flow_id, *events))

    async def mark_done(self, event_ids: Sequence[int], now: float) -> None:
        """Mark pending events done (processed at `now`)."""
        await self._db.executemany(
            "UPDATE inbox SET status = 'done', processed_at = ?, last_error = NULL "
            "WHERE id = ? AND status = 'pending'",
            [(now, i) for i in event_ids],
        )

    async def record_refreshes(self, covers: Sequence[Cover]) -> None:
        """Remember each (flow, events, began): a refresh of that flow for those events began then.

        A refresh that began at `began` fetched a state that already holds what the events received by then
        announce (each was sent after its change), so however many piled up, one refresh per flow answers
        them all (`mark_answered`), and so does it one committed only later (`refreshed_at`).
        """
        rows = [(flow_id, event, began) for flow_id, events, began in covers for event in events]
        await self._db.executemany(_REFRESHED, rows)

    async def mark_answered(self, now: float, limit: int) -> list[float]:
        """Mark done at most `limit` pending events that a recorded refresh answers (received by the time a
        refresh of their flow and kind began); their receipt times (fewer than `limit`: none is left)."""
        # One hop to the connection's thread: a hop per step waits its turn on a loop answering webhooks,
        # holding the writer from their group commit meanwhile.
        return await WriterTurn(self._db).run(_answered, now, limit)

    async def mark_failed(
        self, event_ids: Sequence[int], error: str, next_attempt_at: float, max_attempts: int
    ) -> list[int]:
        """Count one failed attempt; events reaching `max_attempts` become 'dead'. Returns the dead ones."""
        if not event_ids:
            return []
        await self._db.executemany(
            "UPDATE inbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, "
            "status = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'pending' END "
            "WHERE id = ? AND status = 'pending'",
            [(error, next_attempt_at, max_attempts, i) for i in event_ids],
        )
        sql = (
            "SELECT id FROM inbox WHERE status = 'dead'"  # noqa: S608 - placeholders only
            f" AND id IN ({_marks(event_ids)})"
        )
        async with self._db.execute(sql, tuple(event_ids)) as cursor:
            return [int(r[0]) for r in await cursor.fetchall()]

    async def defer(self, event_ids: Sequence[int], until: float) -> None:
        """Postpone pending events without counting an attempt (the API said wait: not their fault)."""
        await self._db.executemany(
            "UPDATE inbox SET next_attempt_at = MAX(next_attempt_at, ?) WHERE id = ? AND status = 'pending'",
            [(until, i) for i in event_ids],
        )

    async def counts(self) -> dict[str, int]:
        """Events by status, plus 'deliveries' (every delivery id recorded)."""
        async with self._db.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status") as cursor:
            counts = {str(r[0]): int(r[1]) for r in await cursor.fetchall()}
        counts["deliveries"] = await fetch_int(self._db, DELIVERIES) or 0
        return counts

    async def last_delivery_at(self) -> float | None:
        """When the last delivery (new or duplicate) arrived: WISEflow was talking to us then."""
        return await fetch_float(self._db, _LAST_DELIVERY)

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead events, oldest first, by their id (never their body)."""
        sql = (
            "SELECT id, event, flow_id, participant_id, attempts, last_error, received_at FROM inbox"
            " WHERE status = 'dead' ORDER BY id LIMIT ?"
        )
        async with self._db.execute(sql, (limit,)) as cursor:
            return [
                DeadLetter(int(r[0]), str(r[1]), r[2], r[3], int(r[4]), r[5], float(r[6]))
                for r in await cursor.fetchall()
            ]

    async def replay(self, item_id: int | None) -> Replay:
        """Re-queue the dead event with id `item_id` (None: every dead event) with a fresh attempt count.

        Nothing supersedes an event: its refresh fetches the flow's current state, so an older one replayed
        after a newer cannot roll anything back. Safe to repeat.
        """
        status: str | None = "dead"
        if item_id is not None:
            status = await fetch_text(self._db, "SELECT status FROM inbox WHERE id = ?", (item_id,))
            if status is None:
                return await self._replay_sequence(item_id)
        # `? IS NULL` selects every dead event when no id is given: one constant statement.
        async with self._db.execute(
            "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0, last_error = NULL "
            "WHERE status = 'dead' AND (? IS NULL OR id = ?)",
            (item_id, item_id),
        ) as cursor:
            return Replay(cursor.rowcount, 0, status)

    async def _replay_sequence(self, sequence: int) -> Replay:
        """Re-queue the dead events WISEflow numbered `sequence`: before events had ids of their own, the
        listing showed the sequence as an event's ID, and runbooks and scripts written then still pass it."""
        status = await fetch_text(
            self._db, "SELECT status FROM inbox WHERE sequence = ? ORDER BY id DESC LIMIT 1", (sequence,)
        )
        async with self._db.execute(
            "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0, last_error = NULL "
            "WHERE status = 'dead' AND sequence = ?",
            (sequence,),
        ) as cursor:
            return Replay(cursor.rowcount, 0, status)
