"""The queues of `FakeUnitOfWork` (tests/fake_unit.py): the outbox and the inbox, in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from service.core.records import WITHDRAWAL_PREFIX, GradeVersion
from service.core.store_ports import Cover, DeadLetter, InboxRow, OutboxItem, Replay
from tests.fake_tables import OutboxRow, Repository


class FakeOutbox(Repository):
    """`unit.outbox` in memory."""

    async def enqueue(self, versions: Sequence[GradeVersion], now: float) -> int:
        t, added = self._write(), 0
        for version in versions:
            mine = [r for r in t.outbox.values() if _who(r.version) == _who(version)]
            key = version.sink_key
            if not mine and not version.is_graded:
                continue  # nothing was sent for this participant: nothing to withdraw
            if mine and mine[-1].key.startswith(key):
                continue  # the participant's latest version already
            taken = any(r.key == key for r in t.outbox.values())
            if taken and not mine:
                continue  # INSERT OR IGNORE: the key is another participant's (cannot happen with real keys)
            row_id = max(t.outbox, default=0) + 1
            t.outbox[row_id] = OutboxRow(row_id, f"{key}-{len(mine) + 1}" if taken else key, version, now)
            added += 1
        return added

    async def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        firsts: dict[tuple[int, int], OutboxRow] = {}
        for row in self.t.outbox.values():  # by id: the first pending row of each participant
            if row.status == "pending":
                firsts.setdefault(_who(row.version), row)
        due = [r for r in firsts.values() if r.next_attempt_at <= now]
        return [_item(r) for r in sorted(due, key=lambda r: r.id)[:limit]]

    async def next_due_at(self) -> float | None:
        return min((r.next_attempt_at for r in self.t.outbox.values() if r.status == "pending"), default=None)

    def _row(self, item_id: int) -> OutboxRow:
        return self._write().outbox[item_id]

    async def mark_delivered(self, item_id: int, now: float) -> None:
        row = self._row(item_id)
        row.status, row.attempts, row.last_error = "delivered", row.attempts + 1, None

    async def mark_failed(self, item_id: int, next_attempt_at: float, error: str) -> None:
        row = self._row(item_id)
        row.attempts, row.next_attempt_at, row.last_error = row.attempts + 1, next_attempt_at, error[:500]

    async def mark_refused(self, item_id: int, next_attempt_at: float, error: str) -> None:
        await self.mark_failed(item_id, next_attempt_at, error)
        self._row(item_id).refusals += 1

    async def mark_dead(self, item_id: int, error: str) -> None:
        row = self._row(item_id)
        row.status, row.attempts, row.refusals, row.last_error = (
            "dead",
            row.attempts + 1,
            row.refusals + 1,
            error[:500],
        )

    async def counts(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.t.outbox.values()))

    async def withdrawals(self) -> int:
        return sum(1 for r in self.t.outbox.values() if r.key.startswith(WITHDRAWAL_PREFIX))

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        dead = [r for r in self.t.outbox.values() if r.status == "dead"][:limit]
        return [
            DeadLetter(r.id, "grade", *_who(r.version), r.attempts, r.last_error, r.created_at) for r in dead
        ]

    async def replay(self, item_id: int | None) -> Replay:
        t = self._write()
        status = "dead" if item_id is None else (t.outbox[item_id].status if item_id in t.outbox else None)
        dead = [r for r in t.outbox.values() if r.status == "dead" and item_id in (None, r.id)]
        superseded = [r for r in dead if any(_newer(n, r) for n in t.outbox.values())]
        for row in dead:
            if row not in superseded:
                row.status, row.refusals, row.next_attempt_at = "pending", 0, 0.0
        return Replay(len(dead) - len(superseded), len(superseded), status)


class FakeInbox(Repository):
    """`unit.inbox` in memory, by event id (arrival order)."""

    async def pending(self, now: float, limit: int = 500) -> list[InboxRow]:
        heads: dict[int | None, int] = {}
        for row in sorted(self.t.inbox.values(), key=lambda r: r.id):
            if row.status == "pending" and row.next_attempt_at > now and row.flow_id is not None:
                heads.setdefault(row.flow_id, row.id)
        rows = [
            r
            for r in sorted(self.t.inbox.values(), key=lambda r: r.id)
            if r.status == "pending" and r.next_attempt_at <= now and r.id < heads.get(r.flow_id, r.id + 1)
        ]
        return rows[:limit]

    async def next_retry_at(self, after: float) -> float | None:
        waiting = [r.next_attempt_at for r in self.t.inbox.values() if r.status == "pending"]
        return min((at for at in waiting if at > after), default=None)

    async def refreshed_at(self, flow_id: int, events: Sequence[str]) -> float | None:
        began = [at for (flow, event), at in self.t.refreshes.items() if flow == flow_id and event in events]
        return max(began, default=None)

    def _set(self, event_id: int, **changes: Any) -> None:
        t = self._write()
        t.inbox[event_id] = replace(t.inbox[event_id], **changes)

    async def mark_done(self, event_ids: Sequence[int], now: float) -> None:
        for i in event_ids:
            if i in self._write().inbox and self.t.inbox[i].status == "pending":
                self._set(i, status="done", processed_at=now, last_error=None)

    async def record_refreshes(self, covers: Sequence[Cover]) -> None:
        refreshes = self._write().refreshes
        for flow_id, events, began in covers:
            for event in events:
                refreshes[(flow_id, event)] = max(refreshes.get((flow_id, event), began), began)

    async def mark_answered(self, now: float, limit: int) -> list[float]:
        received: list[float] = []
        for row in list(self._write().inbox.values()):
            began = self.t.refreshes.get((row.flow_id, row.event)) if row.flow_id is not None else None
            if (
                row.status == "pending"
                and began is not None
                and row.received_at <= began
                and len(received) < limit
            ):
                self._set(row.id, status="done", processed_at=now, last_error=None)
                received.append(row.received_at)
        return received

    async def mark_failed(
        self, event_ids: Sequence[int], error: str, next_attempt_at: float, max_attempts: int
    ) -> list[int]:
        for i in event_ids:
            row = self._write().inbox.get(i)
            if row is not None and row.status == "pending":
                status = "dead" if row.attempts + 1 >= max_attempts else "pending"
                self._set(
                    i,
                    attempts=row.attempts + 1,
                    last_error=error,
                    next_attempt_at=next_attempt_at,
                    status=status,
                )
        return [i for i in event_ids if i in self.t.inbox and self.t.inbox[i].status == "dead"]

    async def defer(self, event_ids: Sequence[int], until: float) -> None:
        for i in event_ids:
            row = self._write().inbox.get(i)
            if row is not None and row.status == "pending":
                self._set(i, next_attempt_at=max(row.next_attempt_at, until))

    async def counts(self) -> dict[str, int]:
        return {**Counter(r.status for r in self.t.inbox.values()), "deliveries": len(self.t.deliveries)}

    async def last_delivery_at(self) -> float | None:
        return self.t.deliveries[-1] if self.t.deliveries else None

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        dead = sorted((r for r in self.t.inbox.values() if r.status == "dead"), key=lambda r: r.id)
        return [
            DeadLetter(r.id, r.event, r.flow_id, r.participant_id, r.attempts, r.last_error, r.received_at)
            for r in dead[:limit]
        ]

    async def replay(self, item_id: int | None) -> Replay:
        t = self._write()
        status = "dead" if item_id is None else (t.inbox[item_id].status if item_id in t.inbox else None)
        dead = [r.id for r in t.inbox.values() if r.status == "dead" and item_id in (None, r.id)]
        if item_id is not None and item_id not in t.inbox:  # the sequence, as IDs were once shown
            same = sorted((r for r in t.inbox.values() if r.sequence == item_id), key=lambda r: r.id)
            status = same[-1].status if same else None
            dead = [r.id for r in same if r.status == "dead"]
        for i in dead:
            self._set(i, status="pending", attempts=0, next_attempt_at=0.0, last_error=None)
        return Replay(len(dead), 0, status)


def _who(version: GradeVersion) -> tuple[int, int]:
    return version.flow_id, version.participant_id


def _newer(other: OutboxRow, dead: OutboxRow) -> bool:
    """`other` is a later version of the dead row's participant that is queued or delivered."""
    return _who(other.version) == _who(dead.version) and other.id > dead.id and other.status != "dead"


def _item(row: OutboxRow) -> OutboxItem:
    return OutboxItem(row.id, row.key, row.version.sink_payload(), row.attempts, row.refusals)
