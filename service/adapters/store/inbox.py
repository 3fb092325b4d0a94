"""The inbox's receiving side: webhook events stored durably before 200 (the worker reads them as `unit.inbox`).

Writes from concurrent requests are group-committed: every request waiting at the same moment joins one
`BEGIN IMMEDIATE ... COMMIT` (SQLite's fsync dominates a small insert, so one commit for many is what
keeps the durable path close to a bare handler), and no request is answered before its commit returned.
The table is unique on the event's sequence: a duplicate (same delivery again, or the same event under a
new delivery id) is absorbed, and every delivery id is recorded in `inbox_deliveries`.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Sequence
from typing import Final

import orjson

from service.adapters.store.connection import Store, WriterTurn
from service.core.webhook_events import WebhookEvent

# One transaction holds at most this many requests: bounds the time any one request waits for its commit.
MAX_BATCH: Final = 256


class Recorded(enum.Enum):
    """What storing one verified event did."""

    NEW = "new"
    DUPLICATE = "duplicate"


# The sequences of a batch already stored before it: one statement (and one cached plan) whatever the
# batch's size, the sequences travelling as one JSON array.
_EXISTING: Final = "SELECT sequence FROM inbox WHERE sequence IN (SELECT value FROM json_each(?))"
_INSERT_EVENT: Final = (
    "INSERT INTO inbox (sequence, event, flow_id, participant_id, event_timestamp, body, received_at, status, "
    "receipt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sequence) DO NOTHING"
)
_INSERT_DELIVERY: Final = (
    "INSERT INTO inbox_deliveries (delivery_id, sequence, received_at) VALUES (?, ?, ?) "
    "ON CONFLICT(delivery_id) DO NOTHING"
)
_Pending = tuple[WebhookEvent, bytes, str, float, str | None, "asyncio.Future[Recorded]"]
_EventRow = tuple[int, str, int | None, int | None, int, bytes, float, str, str | None]
_DeliveryRow = tuple[str, int, float]


def _commit_batch(
    conn: sqlite3.Connection, sequences: str, events: list[_EventRow], deliveries: list[_DeliveryRow]
) -> list[int]:
    """One group commit, run on the connection's thread; returns the sequences that were already stored.

    The same `BEGIN IMMEDIATE ... COMMIT` as `Store.transaction()` (and so the same durability: WAL,
    synchronous=FULL), rolled back here on any failure so the connection is never left inside it.
    `executemany` binds the rows straight from tuples (measured: about a third less of this thread's CPU
    than shipping them as JSON through `json_each`/`json_extract`); it cannot say which rows were new, so
    the sequences already there are read first, inside the same transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        existing = conn.execute(_EXISTING, (sequences,)).fetchall()
        conn.executemany(_INSERT_EVENT, events)
        conn.executemany(_INSERT_DELIVERY, deliveries)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (e.g. disk full) can leave it open
            conn.execute("ROLLBACK")
        raise
    return [int(row[0]) for row in existing]


class Inbox:
    """Commits verified webhook events on a `Store`, many requests to one transaction (see the module)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(
        self, event: WebhookEvent, body: bytes, status: str, now: float, receipt: str | None = None
    ) -> Recorded:
        """Commit `event` (status 'pending' or 'unknown') and its delivery id; return once it is durable.

        `receipt` is the traceparent of the request that received it (for its processing span to link to).
        """
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._queue.append((event, body, status, now, receipt, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="inbox-group-commit")
        # A caller that goes away cancels only its own future; the commit runs in the flusher task regardless.
        return await future

    async def _flush(self) -> None:
        while self._queue:
            # Yield to the loop once before taking a batch: requests whose bytes arrived in this same loop
            # iteration (typical right after a commit returns) queue first and share the commit. No timer,
            # so an idle service adds one loop turn, not a window; measured: ~10% fewer, larger batches.
            await asyncio.sleep(0)
            async with self._store.writer_turn() as writer:
                # The batch is taken once the connection is ours: whatever queued while another transaction
                # (the worker's, the journal's) held it joins this commit rather than waiting a whole fsync.
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    results = await self._write(writer, batch)
                except Exception as exc:  # every waiter must hear about the failure: it answers 503
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _write(self, writer: WriterTurn, batch: Sequence[_Pending]) -> list[Recorded]:
        """The batch in one transaction, whatever its size, in one hop to the connection's thread.

        Each aiosqlite call is a hop to its thread and back (a wake-up of each side, and the GIL handed over
        twice), and those hops, not the fsync (~0.2 ms here), bound the throughput: so BEGIN, the statements
        and COMMIT run as one function on the connection's own thread (`_commit_batch`), one hop per batch.
        """
        sequences = orjson.dumps([e.sequence for e, *_ in batch]).decode()
        events = [
            (e.sequence, e.event, e.flow_id, e.participant_id, e.timestamp, body, now, status, receipt)
            for e, body, status, now, receipt, _ in batch
        ]
        deliveries = [(e.delivery_id, e.sequence, now) for e, _, _, now, _, _ in batch]
        seen = set(await writer.run(_commit_batch, sequences, events, deliveries))
        results: list[Recorded] = []
        for event, *_ in batch:
            results.append(Recorded.DUPLICATE if event.sequence in seen else Recorded.NEW)
            seen.add(event.sequence)  # a second copy inside the same batch is a duplicate
        return results
