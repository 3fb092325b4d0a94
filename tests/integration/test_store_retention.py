"""Retention on a real SQLite file: old rows go in small batches, certify's figures and the keys stay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from service.adapters.store import Store
from service.adapters.store.figures import StoredFigures
from service.adapters.store.inbox import Inbox
from service.adapters.store.journal import JournalWriter
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.clock import ManualClock
from service.core.records import GradeVersion
from service.core.store_ports import RunCounters
from service.core.webhook_events import WebhookEvent
from service.sync.retention import DAY, prune_all, retention_loop
from tests.waiting import wait_until

OLD = 1_600_000_000.0
NOW = OLD + 100 * DAY
CUTOFF = NOW - 30 * DAY


def event(sequence: int, flow_id: int, delivery: str | None = None) -> WebhookEvent:
    """A FINAL_GRADE event of `flow_id`."""
    return WebhookEvent(delivery or f"d-{sequence}", sequence, "FINAL_GRADE", int(OLD), flow_id, 7)


@dataclass(frozen=True)
class Journalled:
    """A request record as the client reports it."""

    time: float
    method: str = "GET"
    path: str = "/flows"
    status: int | None = 200
    duration_ms: float = 1.0
    attempt: int = 1
    trace_id: str | None = "t"
    retry_after: float | None = None


async def count(store: Store, table: str) -> int:
    """Rows of `table` (test inspection only)."""
    async with store.read() as db, db.execute(f"SELECT COUNT(*) FROM {table}") as cursor:  # noqa: S608
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def seed(store: Store) -> None:
    """Old and recent rows in every pruned table."""
    inbox = Inbox(store)
    for sequence, flow_id in ((1, 10), (2, 10), (3, 10), (10, 20), (11, 20)):
        await inbox.record(event(sequence, flow_id), b"{}" * 100, "pending", OLD)
    await inbox.record(event(1, 10, "d-1-again"), b"{}", "pending", OLD)  # a duplicate delivery
    await inbox.record(event(4, 10), b"{}", "pending", NOW)
    async with SqliteUnitOfWork(store).transaction() as unit:
        await unit.inbox.mark_done([1, 2, 3, 4, 5], OLD)  # ids, in order of arrival
        await unit.inbox.mark_done([6], NOW)
        await unit.inbox.record_refreshes([(10, ["FINAL_GRADE"], OLD), (20, ["ASSESSMENT"], NOW)])
        await unit.inbox.mark_answered(NOW, 100)
        await unit.outbox.enqueue([GradeVersion(10, p, "B", None, 1) for p in range(5)], OLD)
        for item in await unit.outbox.due(OLD + 1):
            await unit.outbox.mark_delivered(item.id, OLD)
        runs = unit.runs
        for offset, calls in enumerate((100, 5, 7, 9, 5, 12)):
            run_id = await runs.start(OLD + offset, "run")
            await runs.record_requests(run_id, {"GET /flows": calls - 1, "POST /oauth2/token": 1})
            await runs.finish(run_id, OLD + offset + 1, "ok", RunCounters(api_calls=calls), None)
        failed = await runs.start(OLD + 10, "run")
        await runs.finish(failed, OLD + 11, "failed", RunCounters(api_calls=3), "boom")
        recent = await runs.start(NOW, "run")
        await runs.record_requests(recent, {"GET /flows": 6})
        await runs.finish(recent, NOW + 1, "ok", RunCounters(api_calls=6), None)
    journal = JournalWriter(store)
    for at in (OLD, OLD + 1, NOW):
        journal.record(Journalled(at))
    await journal.flush()


def certify_view(f: StoredFigures) -> tuple[object, ...]:
    """What certify reports from the figures: the first, latest, sorted run sizes and the totals."""
    calls = f.ok_run_calls
    return (
        f.runs,
        calls[0],
        calls[-1],
        sorted(calls),
        f.requests_by_route,
        f.events,
        f.deliveries,
        f.grades_delivered,
        f.dead_letters,
        f.last_success_at,
    )


async def test_pruning_keeps_certify_figures_and_the_outbox_keys(tmp_path: Path) -> None:
    """Old rows go; certify's figures, recent refresh marks and the outbox keys stay."""
    store = await Store.open(tmp_path / "r.sqlite3")
    try:
        await seed(store)
        uow = SqliteUnitOfWork(store)
        async with uow.read() as unit:
            before = await unit.figures.stored()
        touched = await prune_all(uow, CUTOFF, limit=2, pause=0)
        assert touched > 0
        async with uow.read() as unit:
            assert certify_view(await unit.figures.stored()) == certify_view(before)
            marks = [
                await unit.inbox.refreshed_at(10, ["FINAL_GRADE"]),
                await unit.inbox.refreshed_at(20, ["ASSESSMENT"]),
            ]
        assert marks == [None, NOW]  # an old refresh is forgotten: every event it answered is long done
        # inbox: every old processed event is gone with its deliveries (sequence 1 had two); the recent stays.
        assert await count(store, "inbox") == 1
        assert await count(store, "inbox_deliveries") == 0  # the recent event's delivery is in its row
        # runs: the first and the newest ok runs stay, every other old one goes.
        assert await count(store, "sync_runs") == 2
        assert await count(store, "request_journal") == 1
        # outbox: the rows (their keys) stay, their payloads go; a re-read of grade "B" is still no repeat.
        assert await count(store, "outbox") == 5
        async with uow.transaction() as unit:
            assert await unit.outbox.enqueue([GradeVersion(10, 0, "B", None, 1)], NOW) == 0
        assert (
            await prune_all(SqliteUnitOfWork(store), CUTOFF, pause=0) == 0
        )  # nothing left: a second pass touches nothing
    finally:
        await store.close()


async def test_retention_loop_prunes_while_webhooks_keep_committing(tmp_path: Path) -> None:
    """The loop in `run` prunes in small batches on a live database; no concurrent write is lost."""
    store = await Store.open(tmp_path / "live.sqlite3")
    inbox = Inbox(store)
    old = [event(s, 100 + s) for s in range(1, 401)]
    for e in old:
        await inbox.record(e, b"x" * 200, "pending", OLD)
        await inbox.record(event(e.sequence + 1000, e.flow_id or 0), b"x", "pending", OLD)
    uow = SqliteUnitOfWork(store)
    async with uow.transaction() as unit:
        await unit.inbox.mark_done(range(1, 2 * len(old) + 1), OLD)  # the ids of every old event
    stop = asyncio.Event()
    written: list[int] = []

    async def webhooks() -> None:
        sequence = 10_000
        while not stop.is_set():
            sequence += 1
            await inbox.record(event(sequence, 1), b"{}", "pending", NOW)
            written.append(sequence)

    writer = asyncio.create_task(webhooks())
    loop = asyncio.create_task(
        retention_loop(SqliteUnitOfWork(store), 30, ManualClock(NOW), delay=0, interval=3600, limit=50)
    )
    try:

        async def pruned() -> bool:
            async with (
                store.read() as db,
                db.execute("SELECT COUNT(*) FROM inbox WHERE received_at = ?", (OLD,)) as cursor,
            ):
                row = await cursor.fetchone()
            return row is not None and row[0] == 0

        await wait_until(pruned, what="the retention loop pruned the old events", within=30)
        stop.set()
        await writer
        assert len(written) > 0
        async with uow.read() as unit:
            pending = await unit.inbox.pending(NOW, limit=len(written) + 10)
        assert [row.sequence for row in pending] == written  # every concurrent webhook is there, in order
        assert await count(store, "inbox") == len(written)  # every old processed event went
    finally:
        stop.set()
        loop.cancel()
        await asyncio.gather(loop, writer, return_exceptions=True)
        await store.close()


async def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    """SYNC_RETAIN_DAYS=0: the loop returns at once and nothing is deleted."""
    store = await Store.open(tmp_path / "keep.sqlite3")
    try:
        await seed(store)
        rows = await count(store, "inbox")
        await retention_loop(SqliteUnitOfWork(store), 0, ManualClock(NOW))
        assert await count(store, "inbox") == rows
    finally:
        await store.close()
