"""The inbox's receiving side: webhook events stored durably before 200 (the worker reads them as `unit.inbox`).

Writes from concurrent requests are group-committed: every request waiting at the same moment joins one
`BEGIN IMMEDIATE ... COMMIT` (SQLite's fsync dominates a small insert, so one commit for many is what
keeps the durable path close to a bare handler), and no request is answered before its commit returned.
Which delivery is a duplicate is decided inside that transaction (`core.inbox_dedupe.judge`): the same
event (sequence, event, flow, participant) delivered again within WISEflow's redelivery window is absorbed;
a different event under a stored sequence is stored as a new event (`Recorded.REUSED`, which the receiver
reports). Every delivery is recorded: the one that brought an event in the event's row (`delivery_id`), a
later one (a redelivery) in `inbox_deliveries` with the id of the event it delivered again.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Sequence
from typing import Final

import orjson

from service.adapters.store.connection import Store, WriterTurn, run_transaction
from service.core.inbox_dedupe import Arrival, Stored, judge
from service.core.webhook_events import WebhookEvent

# One transaction holds at most this many requests: bounds the time any one request waits for its commit.
MAX_BATCH: Final = 256


class Recorded(enum.Enum):
    """What storing one verified event did."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REUSED = "reused"  # stored as a new event, although its sequence already names another stored one


_RECORDED: Final = {
    Arrival.NEW: Recorded.NEW,
    Arrival.DUPLICATE: Recorded.DUPLICATE,
    Arrival.REUSED: Recorded.REUSED,
}
# The stored events sharing a sequence with one of the batch: one statement (and one cached plan) whatever
# the batch's size, the sequences travelling as one JSON array. Rarely any: only duplicates find one.
_SAME_SEQUENCE: Final = (
    "SELECT id, sequence, event, flow_id, participant_id, received_at FROM inbox"
    " WHERE sequence IN (SELECT value FROM json_each(?))"
)
# The last id handed out (AUTOINCREMENT: never one of a deleted row): new rows take the next ones.
_LAST_ID: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'inbox'"
# A new event's row carries the delivery that brought it; a redelivery of a stored one is a row of its own.
_INSERT_EVENT: Final = (
    "INSERT INTO inbox (id, sequence, event, flow_id, participant_id, event_timestamp, body, received_at, "
    "status, receipt, delivery_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The same row, its id the next AUTOINCREMENT hands out: what `judge` would give each event of a batch
# that is all new (see `_commit_batch`).
_INSERT_NEW: Final = (
    "INSERT INTO inbox (sequence, event, flow_id, participant_id, event_timestamp, body, received_at, "
    "status, receipt, delivery_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_REDELIVERY: Final = "INSERT INTO inbox_deliveries (delivery_id, event_id, received_at) VALUES (?, ?, ?)"
_Pending = tuple[WebhookEvent, bytes, str, float, str | None, "asyncio.Future[Recorded]"]
# An event's row without its id: (sequence, event, flow, participant, timestamp, body, received_at, status,
# receipt, delivery id); its id is known only once the transaction has judged it.
_EventRow = tuple[int, str, int | None, int | None, int, bytes, float, str, str | None, str]


def _commit_batch(conn: sqlite3.Connection, sequences: str, events: list[_EventRow]) -> list[Arrival]:
    """One group commit's statements, on the connection's thread inside `run_transaction`; what each event
    is, in order.

    The events sharing a sequence are read and judged inside the transaction (no other writer can come
    between), and the new rows are written with their ids: `executemany` binds the rows straight from
    tuples (measured: about a third less of this thread's CPU than shipping them as JSON via `json_each`).
    The steady stream shares no sequence with a stored event, nor within its batch: then `judge` would call
    every event new and give it the next id, so the rows go in as they are, with no judging in Python on
    this thread (measured: 2.3 us a row, holding the GIL the event loop needs meanwhile).
    """
    found = conn.execute(_SAME_SEQUENCE, (sequences,)).fetchall()
    if not found and len({e[0] for e in events}) == len(events):
        conn.executemany(_INSERT_NEW, events)
        return [Arrival.NEW] * len(events)
    stored = [Stored(int(r[0]), (int(r[1]), str(r[2]), r[3], r[4]), float(r[5])) for r in found]
    last = conn.execute(_LAST_ID).fetchone()
    verdicts = judge(stored, [(e[:4], e[6]) for e in events], 1 + (int(last[0]) if last else 0))
    batch = list(zip(verdicts, events, strict=True))
    conn.executemany(_INSERT_EVENT, [(v.event_id, *e) for v, e in batch if v.stored])
    redelivered = [(e[9], v.event_id, e[6]) for v, e in batch if not v.stored]
    if redelivered:  # rare: a delivery of an event already stored
        conn.executemany(_INSERT_REDELIVERY, redelivered)
    return [v.arrival for v in verdicts]


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
            # The next batch goes as soon as the last one returned, as the minimal durable receiver hands it
            # over (bench/durable.py): what arrived during that commit is waiting already, and each loop turn
            # spent before the hop leaves the writer idle while 32 connections' requests pile up behind it.
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
            (
                e.sequence,
                e.event,
                e.flow_id,
                e.participant_id,
                e.timestamp,
                body,
                now,
                status,
                receipt,
                e.delivery_id,
            )
            for e, body, status, now, receipt, _ in batch
        ]
        arrivals = await writer.run(run_transaction, _commit_batch, sequences, events)
        return [_RECORDED[a] for a in arrivals]
