"""The inbox worker over a real SQLite inbox, a fake refresher and a manual clock (no sleeping).

(tests/unit/test_inbox_worker_unit.py drives the same worker over the in-memory `FakeUnitOfWork`.)"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from service.adapters.store import Store
from service.adapters.store.connection import WriterTurn
from service.adapters.store.inbox import Inbox, Recorded
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.backoff import Backoff
from service.core.clock import ManualClock
from service.core.store_ports import DeadLetter
from service.core.webhook_events import WebhookEvent
from service.core.webhook_figures import WebhookFigures
from service.errors import ApiError, ApiUnavailable, AuthError, CircuitOpen
from service.sync import inbox_worker
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.signals import Signals
from tests.waiting import wait_until

NOW = 1_700_000_000.0


class FakeRefresher:
    """Records every refresh; fails the next `fail` calls with `error`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = 0
        self.error: Exception = ApiError("refused", status=422)  # this event's own failure

    async def _call(self, kind: str, flow_id: int) -> None:
        if self.fail:
            self.fail -= 1
            raise self.error
        self.calls.append((kind, flow_id))

    async def refresh_flow(self, flow_id: int) -> None:
        await self._call("flow", flow_id)

    async def refresh_grades(self, flow_id: int, *, with_participants: bool) -> int:
        await self._call("participants" if with_participants else "assessments", flow_id)
        return 0  # the rows it queued: none here (tests/unit has the refresh that queues)


class World:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.inbox = Inbox(store)
        self.uow = SqliteUnitOfWork(store)
        self.signals = Signals()
        self.clock = ManualClock(start=NOW)
        self.refresher = FakeRefresher()
        self.figures = WebhookFigures()
        self.worker = InboxWorker(
            self.uow,
            self.refresher,
            self.signals,
            self.clock,
            WorkerPolicy(max_attempts=3, backoff=Backoff(1.0, 10.0)),
            self.figures,
            random.Random(1),
        )

    async def add(self, sequence: int, event: str = "FINAL_GRADE", flow_id: int = 10) -> None:
        ev = WebhookEvent(f"d{sequence}", sequence, event, int(NOW), flow_id, 1)
        await self.inbox.record(ev, b"{}", "pending", self.clock.wall())

    async def dead_letters(self) -> list[DeadLetter]:
        async with self.uow.read() as unit:
            return await unit.inbox.dead_letters()

    async def replay(self, sequence: int | None) -> int:
        async with self.uow.transaction() as unit:
            return (await unit.inbox.replay(sequence)).requeued

    async def statuses(self) -> dict[int, str]:
        async with self.store.db.execute("SELECT sequence, status FROM inbox") as cur:
            return {int(r[0]): str(r[1]) for r in await cur.fetchall()}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await Store.open(tmp_path / "inbox.sqlite3")
    try:
        yield World(store)
    finally:
        await store.close()


async def test_each_event_kind_calls_its_refresh(world: World) -> None:
    """Grades refresh assessments, flow events refresh the flow, submissions refresh participants."""
    await world.add(1, "FINAL_GRADE", 1)
    await world.add(2, "FLOW_STATE_UPDATED", 2)
    await world.add(3, "PAPER_SUBMITTED", 3)
    await world.add(4, "FLOW_PERIOD_UPDATED", 4)
    await world.add(5, "ASSIGNMENT", 5)
    await world.add(6, "ALTERNATIVE_GRADE", 6)
    result = await world.worker.run_once()
    assert world.refresher.calls == [
        ("assessments", 1),
        ("flow", 2),
        ("participants", 3),
        ("flow", 4),
        ("participants", 5),
        ("assessments", 6),
    ]
    assert result.processed == 6
    assert set((await world.statuses()).values()) == {"done"}


async def test_events_of_one_flow_share_one_refresh(world: World) -> None:
    """Several grade events of one flow waiting together cost one assessments refresh."""
    for sequence in (1, 2, 3):
        await world.add(sequence, "ASSESSMENT", 10)
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 10)]
    assert await world.statuses() == {1: "done", 2: "done", 3: "done"}


async def test_a_burst_beyond_one_batch_costs_one_refresh_per_flow(world: World) -> None:
    """40 events over 2 flows with a batch of 5: one pass, one refresh per flow, every event done."""
    world.worker.policy = WorkerPolicy(batch=5)
    for sequence in range(1, 41):
        await world.add(sequence, "FINAL_GRADE", 10 + sequence % 2)
    result = await world.worker.run_once()
    assert sorted(world.refresher.calls) == [("assessments", 10), ("assessments", 11)]
    assert set((await world.statuses()).values()) == {"done"}
    assert (result.processed, world.figures.processed) == (40, 40)


async def test_a_pass_marks_its_events_in_short_transactions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events a pass's refreshes answer are marked at most COVER_CHUNK a transaction (the writer is free
    between them), and still every one: 6 events, a chunk of 2: the refreshes recorded, then 3 transactions
    of 2 and a last that finds none left."""
    monkeypatch.setattr(inbox_worker, "COVER_CHUNK", 2)
    for sequence in range(1, 6):
        await world.add(sequence, flow_id=10)
    await world.add(6, flow_id=20)
    opened: list[int] = []
    original = world.store.transaction

    def counting() -> Any:
        opened.append(1)
        return original()

    monkeypatch.setattr(world.store, "transaction", counting)
    result = await world.worker.run_once()
    assert (len(world.refresher.calls), len(opened)) == (2, 5)
    assert set((await world.statuses()).values()) == {"done"}
    assert (result.processed, world.figures.processed) == (6, 6)


async def test_an_event_received_after_the_refresh_began_waits_for_the_next(world: World) -> None:
    """A refresh answers only what arrived before it began: a later event of that flow stays pending."""
    world.worker.policy = WorkerPolicy(batch=1)
    await world.add(1)
    await world.add(2, "FLOW_STATE_UPDATED")  # another kind: not answered by the assessments refresh
    world.clock.advance(1.0)
    refresh = world.refresher.refresh_grades

    async def refresh_while_an_event_arrives(flow_id: int, *, with_participants: bool) -> int:
        queued = await refresh(flow_id, with_participants=with_participants)
        world.clock.advance(1.0)
        await world.add(3)  # received after the refresh began
        return queued

    world.refresher.refresh_grades = refresh_while_an_event_arrives  # type: ignore[method-assign]
    await world.worker.run_once()
    assert await world.statuses() == {1: "done", 2: "pending", 3: "pending"}


async def test_a_done_event_is_not_processed_again(world: World) -> None:
    """A second pass finds nothing to do: processed events stay done."""
    await world.add(1)
    await world.worker.run_once()
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 10)]


async def test_an_event_received_before_a_refresh_began_is_superseded(world: World) -> None:
    """An event committed only after a pass's refresh, though received before that refresh began, is done
    without another refresh: the refresh fetched its change. Its sequence (higher here) plays no part."""
    await world.add(7)
    world.clock.advance(1.0)
    await world.worker.run_once()  # the refresh began at NOW + 1
    late = WebhookEvent("d9", 9, "FINAL_GRADE", int(NOW), 10, 1)
    await world.inbox.record(late, b"{}", "pending", NOW + 0.5)  # its request began before the refresh
    world.clock.advance(1.0)
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 10)]
    assert await world.statuses() == {7: "done", 9: "done"}
    assert world.figures.superseded == 1


async def test_an_event_arriving_after_a_refresh_is_refreshed_whatever_its_sequence(world: World) -> None:
    """Sequences far ahead were applied, then real changes with low sequences arrive: each is refreshed."""
    await world.add(10**12)
    world.clock.advance(1.0)
    await world.worker.run_once()
    for sequence in (14, 15):
        world.clock.advance(1.0)
        await world.add(sequence)
        await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 10)] * 3
    assert world.figures.superseded == 0


async def test_a_refresh_of_another_kind_does_not_supersede(world: World) -> None:
    """Supersession is per kind: a flow event received before a grades refresh still refreshes the flow."""
    await world.add(7, "FINAL_GRADE")
    world.clock.advance(1.0)
    await world.worker.run_once()
    flow_event = WebhookEvent("d5", 5, "FLOW_STATE_UPDATED", int(NOW), 10, None)
    await world.inbox.record(flow_event, b"{}", "pending", NOW)
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 10), ("flow", 10)]


async def test_failures_retry_with_backoff_then_dead_letter(world: World) -> None:
    """A failing event is retried after its backoff and is dead after max_attempts (3) failures."""
    await world.add(1)
    world.refresher.fail = 99
    first = await world.worker.run_once()
    assert first.failed == 1
    assert first.next_due is not None
    assert NOW < first.next_due <= NOW + 1.0  # full jitter within the first ceiling (base 1 s)
    await world.worker.run_once()  # not due yet: no attempt
    assert world.refresher.fail == 98
    for _ in range(2):
        world.clock.advance(10.0)
        await world.worker.run_once()
    assert await world.statuses() == {1: "dead"}
    assert world.figures.dead_lettered == 1
    dead = await world.dead_letters()
    assert (dead[0].attempts, dead[0].last_error) == (3, "ApiError: refused | status=422 | attempt=1")


async def test_a_failing_event_holds_back_later_events_of_its_flow_only(world: World) -> None:
    """Order per flow: flow 10's later event waits behind its failed one; flow 20 goes ahead."""
    await world.add(1, "FINAL_GRADE", 10)
    await world.add(2, "FLOW_STATE_UPDATED", 10)
    await world.add(3, "FINAL_GRADE", 20)
    world.refresher.fail = 1
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 20)]
    assert await world.statuses() == {1: "pending", 2: "pending", 3: "done"}
    world.clock.advance(10.0)
    await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 20), ("assessments", 10), ("flow", 10)]


async def test_circuit_open_defers_without_burning_attempts(world: World) -> None:
    """While the breaker is open, events wait (one idle interval at a time) and their attempt count stays 0."""
    world.worker.policy = WorkerPolicy(
        max_attempts=3, backoff=Backoff(1.0, 10.0), concurrency=1, idle_interval=5.0
    )
    await world.add(1, flow_id=10)
    await world.add(2, flow_id=20)
    world.refresher.fail = 5
    world.refresher.error = CircuitOpen("http://api", retry_after=30.0, reason="maintenance")
    result = await world.worker.run_once()
    # Not the whole 30 s: a half-open breaker's probe may close it sooner; looking again is free.
    assert result.next_due == NOW + 5.0
    async with world.store.db.execute("SELECT attempts, next_attempt_at FROM inbox ORDER BY sequence") as cur:
        assert [tuple(r) for r in await cur.fetchall()] == [(0, NOW + 5.0), (0, NOW + 5.0)]
    assert world.refresher.fail == 4  # one call tried, the pass stopped there
    world.clock.advance(5.0)
    await world.worker.run_once()  # still open: another free look
    async with world.store.db.execute("SELECT attempts FROM inbox ORDER BY sequence") as cur:
        assert [r[0] for r in await cur.fetchall()] == [0, 0]
    world.refresher.fail = 0
    world.clock.advance(30.0)
    await world.worker.run_once()
    assert await world.statuses() == {1: "done", 2: "done"}


async def test_replay_requeues_dead_letters_and_is_repeatable(world: World) -> None:
    """`replay` turns dead events pending with fresh attempts; replaying again changes nothing."""
    await world.add(1)
    await world.add(2, flow_id=20)
    world.refresher.fail = 99
    for _ in range(3):
        await world.worker.run_once()
        world.clock.advance(10.0)
    assert await world.statuses() == {1: "dead", 2: "dead"}
    assert await world.replay(1) == 1
    assert await world.replay(1) == 0
    assert await world.replay(None) == 1
    assert await world.replay(None) == 0
    world.refresher.fail = 0
    await world.worker.run_once()
    assert await world.statuses() == {1: "done", 2: "done"}


async def test_processing_lag_is_recorded(world: World) -> None:
    """The lag from receipt to done is measured on the clock."""
    await world.add(1)
    world.clock.advance(2.5)
    await world.worker.run_once()
    assert (world.figures.processed, world.figures.lag_last) == (1, 2.5)


async def test_unknown_events_are_never_processed(world: World) -> None:
    """Events stored as 'unknown' are left alone by the worker."""
    ev = WebhookEvent("dx", 9, "NEW_THING", int(NOW), None, None)
    await world.inbox.record(ev, b"{}", "unknown", NOW)
    await world.worker.run_once()
    assert (world.refresher.calls, await world.statuses()) == ([], {9: "unknown"})


async def test_counts_include_deliveries(world: World) -> None:
    """Counts by status include deliveries."""
    await world.add(1)
    await world.add(2)
    await world.worker.run_once()
    async with world.uow.read() as unit:
        assert await unit.inbox.counts() == {"done": 2, "deliveries": 2}


async def test_run_loop_processes_on_wake_and_stops_on_cancel(world: World) -> None:
    """The background loop processes an event soon after `Signals.stored()` and ends cleanly when cancelled."""
    world.worker.policy = WorkerPolicy(idle_interval=3600.0)  # only a wake-up can explain a prompt pass
    passes: list[object] = []
    one_pass = world.worker.run_once

    async def counted_pass() -> object:
        result = await one_pass()
        passes.append(result)
        return result

    world.worker.run_once = counted_pass  # type: ignore[method-assign]
    task = asyncio.create_task(world.worker.run())
    await wait_until(lambda: len(passes) == 1, what="the first (empty) pass over")  # the loop now waits
    await world.add(1)
    world.signals.stored()
    await wait_until(lambda: len(passes) == 2, what="a pass after stored()")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await world.statuses() == {1: "done"}


class HeldRefresher(FakeRefresher):
    """Holds every refresh until `gate` opens, counting how many are held at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0

    async def _call(self, kind: str, flow_id: int) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.gate.wait()
        self.running -= 1
        await super()._call(kind, flow_id)


async def test_flows_are_refreshed_a_few_at_a_time(world: World) -> None:
    """Five flows with concurrency 2: at most two refreshes run at once, and every event is done."""
    refresher = HeldRefresher()
    policy = WorkerPolicy(concurrency=2)
    worker = InboxWorker(world.uow, refresher, world.signals, world.clock, policy, world.figures)
    for flow_id in range(5):
        await world.add(100 + flow_id, flow_id=flow_id)
    passing = asyncio.create_task(worker.run_once())
    # Every refresh is held: without the bound, all five would be running here, not two.
    await wait_until(lambda: refresher.running == 2, what="two refreshes running")
    for _ in range(10):
        await asyncio.sleep(0)  # a yield, not a wait: room for a third refresh to (wrongly) start
    refresher.gate.set()
    await passing
    assert (refresher.most, len(refresher.calls)) == (2, 5)
    assert set((await world.statuses()).values()) == {"done"}


async def test_a_waiter_that_goes_away_does_not_stop_the_group_commit(world: World) -> None:
    """Cancelling one request waiting for its commit leaves the batch (its own event included) committed."""
    first = asyncio.create_task(world.add(1))
    second = asyncio.create_task(world.add(2))
    await asyncio.sleep(0)  # a yield, not a wait: both tasks start and queue for the same commit
    first.cancel()
    await asyncio.gather(first, second, return_exceptions=True)

    async def both_stored() -> bool:
        return len(await world.statuses()) == 2

    await wait_until(both_stored, what="both events committed")
    assert await world.statuses() == {1: "pending", 2: "pending"}


class CountingInbox(Inbox):
    """The real inbox, counting the events of each group commit."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.batches: list[int] = []

    async def _write(self, writer: WriterTurn, batch: Sequence[Any]) -> list[Recorded]:
        self.batches.append(len(batch))
        return await super()._write(writer, batch)


async def test_requests_queued_behind_another_transaction_join_one_commit(world: World) -> None:
    """One request waits for the lock, nine more arrive meanwhile: all ten share one commit (one fsync)."""
    inbox = CountingInbox(world.store)
    release = asyncio.Event()

    async def hold_the_writer() -> None:
        async with world.store.transaction():
            await release.wait()

    holder = asyncio.create_task(hold_the_writer())
    records = [asyncio.create_task(inbox.record(_event(1), b"{}", "pending", NOW))]
    for _ in range(20):  # the holder takes the lock; the first request's commit waits for it
        await asyncio.sleep(0)
    records += [asyncio.create_task(inbox.record(_event(s), b"{}", "pending", NOW)) for s in range(2, 11)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*records) == [Recorded.NEW] * 10
    await holder
    assert inbox.batches == [10]


def _event(sequence: int) -> WebhookEvent:
    return WebhookEvent(f"d{sequence}", sequence, "FINAL_GRADE", int(NOW), 10, 1)


async def test_an_hour_of_refused_credentials_dead_letters_nothing(world: World) -> None:
    """Credentials refused for an hour (fake clock): no event is dead-lettered or charged an attempt, and
    every event is processed once the credentials work again."""
    world.worker.policy = WorkerPolicy(max_attempts=3, backoff=Backoff(1.0, 10.0), idle_interval=5.0)
    for sequence, flow_id in ((1, 10), (2, 20), (3, 10)):
        await world.add(sequence, flow_id=flow_id)
    world.refresher.fail = 10**6
    world.refresher.error = AuthError("credentials refused (invalid_client)", status=400)
    passes = 0
    while world.clock.wall() < NOW + 3600:
        result = await world.worker.run_once()
        assert result.next_due is not None
        assert result.next_due > world.clock.wall()  # never "again at once": the pass waits
        world.clock.advance(result.next_due - world.clock.wall())
        passes += 1
    assert passes >= 3600 / 5
    assert world.figures.dead_lettered == 0
    assert await world.dead_letters() == []
    async with world.store.db.execute("SELECT attempts FROM inbox ORDER BY sequence") as cur:
        assert [r[0] for r in await cur.fetchall()] == [0, 0, 0]
    world.refresher.fail = 0
    world.clock.advance(5.0)
    await world.worker.run_once()
    assert await world.statuses() == {1: "done", 2: "done", 3: "done"}
    assert sorted(world.refresher.calls) == [("assessments", 10), ("assessments", 20)]


async def test_wiseflow_unavailable_defers_without_burning_attempts(world: World) -> None:
    """A 503 or a timeout is about WISEflow, not the event: it waits without an attempt counted."""
    await world.add(1)
    world.refresher.fail = 1
    world.refresher.error = ApiUnavailable("down", status=503)
    result = await world.worker.run_once()
    assert (result.failed, result.next_due) == (0, NOW + world.worker.policy.idle_interval)
    async with world.store.db.execute("SELECT attempts FROM inbox") as cur:
        assert [r[0] for r in await cur.fetchall()] == [0]
    world.clock.advance(world.worker.policy.idle_interval)
    await world.worker.run_once()
    assert await world.statuses() == {1: "done"}


async def test_events_behind_a_failing_head_never_starve_other_flows(world: World) -> None:
    """A batch full of events waiting behind flow 10's failing head: flow 20's event is still processed,
    and a pass that moved nothing does not ask for the next pass at once (no busy loop)."""
    world.worker.policy = WorkerPolicy(max_attempts=8, backoff=Backoff(60.0, 60.0), batch=3, idle_interval=5.0)
    for sequence in range(1, 6):
        await world.add(sequence, "ASSESSMENT" if sequence == 1 else "FLOW_STATE_UPDATED", flow_id=10)
    await world.add(6, flow_id=20)
    world.refresher.fail = 1  # flow 10's head fails once; its retry is a minute away
    first = await world.worker.run_once()
    assert first.failed == 1
    second = await world.worker.run_once()
    assert world.refresher.calls == [("assessments", 20)]
    assert (await world.statuses())[6] == "done"
    third = await world.worker.run_once()  # nothing is due now: the next pass is when the head's retry is
    assert third.processed == third.failed == 0
    assert third.next_due is not None
    assert third.next_due > world.clock.wall()
    assert second.next_due is not None
    assert second.next_due > world.clock.wall()
