"""One contract, two implementations: the rules of the store's ports, on SQLite and on `FakeUnitOfWork`.

The loops' unit tests run on the fake; these tests are what make its answers the real store's answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.inbox import Inbox, Recorded
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.planner import NEVER, FlowPlan, due_in_order, due_key
from service.core.records import Flow, GradeVersion, Participant
from service.core.run_record import Changes, MirrorCounts
from service.core.store_ports import Replay, RunCounters, UnitOfWork
from service.core.webhook_events import WebhookEvent
from service.errors import StoreError
from tests.fake_unit import FakeUnitOfWork

NOW = 1_700_000_000.0


@dataclass
class Subject:
    """A unit of work, and the receiver's way to commit an event into it."""

    uow: UnitOfWork
    store: Store | None = None

    async def receive(
        self, sequence: int, flow_id: int, event: str = "FINAL_GRADE", at: float = NOW, delivery: str = ""
    ) -> bool:
        """Commit a webhook event as the receiver does; False: absorbed as a duplicate."""
        received = WebhookEvent(
            delivery or f"d{sequence}-{flow_id}-{event}-{at}", sequence, event, int(NOW), flow_id, 7
        )
        if self.store is not None:
            return await Inbox(self.store).record(received, b"{}", "pending", at) is not Recorded.DUPLICATE
        assert isinstance(self.uow, FakeUnitOfWork)
        return self.uow.receive(received, at)


@pytest.fixture(params=["sqlite", "fake"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "fake":
        yield Subject(FakeUnitOfWork())
        return
    store = await Store.open(tmp_path / "contract.sqlite3")
    try:
        yield Subject(SqliteUnitOfWork(store), store)
    finally:
        await store.close()


async def test_a_transaction_that_raises_leaves_nothing(subject: Subject) -> None:
    """Every write of a transaction whose block raised is gone; a committed one stays."""
    uow = subject.uow

    async def fail_after_writing() -> None:
        async with uow.transaction() as unit:
            await unit.checkpoints.set("k", {"a": 1}, NOW)
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError):
        await fail_after_writing()
    async with uow.transaction() as unit:
        assert await unit.checkpoints.get("k") is None
        await unit.checkpoints.set("k", [1, 2], NOW)
    async with uow.read() as unit:
        assert await unit.checkpoints.get("k") == [1, 2]


async def test_reads_see_only_what_committed_and_refuse_writes(subject: Subject) -> None:
    """A read beside an open transaction sees the committed value; a write in a read is a StoreError."""
    uow = subject.uow
    inside, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with uow.transaction() as unit:
            await unit.checkpoints.set("k", 2, NOW)
            inside.set()
            await release.wait()

    async def write_in_a_read() -> None:
        async with uow.read() as unit:
            await unit.checkpoints.set("k", 3, NOW)

    task = asyncio.create_task(writer())
    await inside.wait()
    async with uow.read() as unit:
        assert await unit.checkpoints.get("k") is None
    release.set()
    await task
    async with uow.read() as unit:
        assert await unit.checkpoints.get("k") == 2
    with pytest.raises(StoreError):
        await write_in_a_read()


async def test_a_flow_write_older_than_the_last_commit_is_refused(subject: Subject) -> None:
    """The state clock: a write fetched before a later committed write does not land; the refresh
    version is claimed once; a 404 older than the flow's last write does not remove it."""
    async with subject.uow.transaction() as unit:
        flows = unit.flows
        before = await flows.state_clock()
        assert await flows.save(Flow(1, "ACTIVATED"), NOW, clock=before)
        await flows.save_plans({1: FlowPlan(None, NOW)})
        assert not await flows.save(Flow(1, "CONCLUDED"), NOW, clock=before)  # fetched before the first
        assert await flows.save(Flow(1, "CONCLUDED"), NOW, clock=await flows.state_clock())
        assert not await flows.delete(1, before)
        version = await flows.refresh_version(1)
        assert (await flows.claim_refresh(1, version), await flows.claim_refresh(1, version)) == (True, False)
        stored = await flows.get(1)
        assert stored is not None
        assert stored[0].state == "CONCLUDED"
        assert [f.flow_id for f in await flows.live()] == [1]


async def test_a_page_of_flows_saved_at_once_is_each_saved_as_alone(subject: Subject) -> None:
    """`save_many` (discovery's page): in order, a new flow added, a changed one changed, an unchanged one
    neither, one fetched before a later write skipped (None) yet marked seen by the pass."""
    async with subject.uow.transaction() as unit:
        flows = unit.flows
        await flows.save_many([Flow(1, "ACTIVATED"), Flow(2, "ACTIVATED"), Flow(3, "ACTIVATED")], NOW)
        before = await flows.state_clock()
        assert await flows.save(Flow(3, "CONCLUDED"), NOW, clock=await flows.state_clock())  # a later fetch
        page = [Flow(1, "CONCLUDED"), Flow(2, "ACTIVATED"), Flow(3, "ACTIVATED"), Flow(4, "ACTIVATED")]
        saved = await flows.save_many(page, NOW + 1, clock=before, seen_at=NOW + 1)
        assert saved == [Changes(changed=1), Changes(), None, Changes(added=1)]
        for flow_id in (1, 2, 3, 4):
            await flows.save_plans({flow_id: FlowPlan(None, 0.0)})
        assert await flows.vanished(NOW + 1) == []  # every flow of the page seen, the skipped one too
        assert [(f.flow_id, f.state) for f, _ in await flows.page(0, 10)] == [
            (1, "CONCLUDED"),
            (2, "ACTIVATED"),
            (3, "CONCLUDED"),
            (4, "ACTIVATED"),
        ]


async def test_vanished_flows_and_their_plans(subject: Subject) -> None:
    """Unlisted since the pass began and not fetched for the last time; a flow without a plan is not listed."""
    async with subject.uow.transaction() as unit:
        for flow_id, seen_at, final in ((1, 99.0, False), (2, 100.0, False), (3, 99.0, True), (4, 10.0, False)):
            await unit.flows.save(Flow(flow_id, "CONCLUDED"), 1.0, seen_at=seen_at)
            await unit.flows.save_plans({flow_id: FlowPlan(None, 0.0, final_fetch_done=final)})
        await unit.flows.save(Flow(5, "CONCLUDED"), 1.0, seen_at=1.0)  # no plan yet
        assert await unit.flows.vanished(100.0) == [1, 4]
        assert [f.flow_id for f, _ in await unit.flows.page(0, 10)] == [1, 2, 3, 4]


async def test_flows_are_read_a_page_at_a_time_by_id(subject: Subject) -> None:
    """`page(after, limit)`: the flows with a plan after an id, by id, at most `limit` of them."""
    async with subject.uow.transaction() as unit:
        for flow_id in (5, 1, 4, 2):
            await unit.flows.save(Flow(flow_id, "ACTIVATED"), NOW)
            await unit.flows.save_plans({flow_id: FlowPlan(None, NOW)})
        await unit.flows.save(Flow(3, "ACTIVATED"), NOW)  # no plan yet
    async with subject.uow.read() as unit:
        pages = [await unit.flows.page(after, 2) for after in (0, 2, 5)]
    assert [[f.flow_id for f, _ in page] for page in pages] == [[1, 2], [4, 5], []]


async def test_due_flows_are_read_a_page_at_a_time_in_the_planners_order(subject: Subject) -> None:
    """`due(now, after, limit)` pages through what `planner.due_in_order` answers over every stored flow: the
    same flows, in the same order (early refreshes, then by due time, ties by id); `count_due` counts them."""
    plans = {
        1: FlowPlan(None, 50.0),
        2: FlowPlan(None, 200.0),  # not due at 100
        3: FlowPlan(None, 10.0),
        4: FlowPlan(None, NEVER, early_refresh=True),
        5: FlowPlan(None, 10.0),
        6: FlowPlan(None, 100.0),  # due: exactly now
        7: FlowPlan(None, 5.0, early_refresh=True),
        8: FlowPlan(None, 5.0, final_fetch_done=True),
        9: FlowPlan(None, NEVER, final_fetch_done=True),
        10: FlowPlan(None, 10.0),
    }
    async with subject.uow.transaction() as unit:
        for flow_id in plans:
            await unit.flows.save(Flow(flow_id, "ACTIVATED"), NOW)
        await unit.flows.save_plans(plans)
        await unit.flows.save(Flow(11, "ACTIVATED"), NOW)  # no plan yet: not a flow a run knows
    expected = [
        fp[0].flow_id for fp in due_in_order([(Flow(i, "ACTIVATED"), p) for i, p in plans.items()], 100.0)
    ]
    assert expected == [7, 4, 8, 3, 5, 10, 1, 6]
    for limit in (1, 2, 3, 8, 100):
        read, after = [], None
        async with subject.uow.read() as unit:
            while page := await unit.flows.due(100.0, after, limit):
                read += [flow.flow_id for flow, _ in page]
                after = due_key(*page[-1])
            assert read == expected, limit
            assert await unit.flows.count_due(100.0) == len(expected)


async def test_a_due_flow_behind_the_cursor_or_polled_meanwhile_is_not_read_again(subject: Subject) -> None:
    """Between two pages: a flow read already is not read again, even unchanged (it lost every race), and a
    flow not yet read that was polled meanwhile (its plan now in the future) is no longer due."""
    async with subject.uow.transaction() as unit:
        for flow_id in (1, 2, 3, 4):
            await unit.flows.save(Flow(flow_id, "ACTIVATED"), NOW)
            await unit.flows.save_plans({flow_id: FlowPlan(None, float(flow_id))})
    async with subject.uow.read() as unit:
        first = await unit.flows.due(10.0, None, 2)
    async with subject.uow.transaction() as unit:
        await unit.flows.save_plans({1: FlowPlan(10.0, 900.0), 3: FlowPlan(10.0, 900.0)})
    async with subject.uow.read() as unit:
        rest = await unit.flows.due(10.0, due_key(*first[-1]), 2)
    assert ([f.flow_id for f, _ in first], [f.flow_id for f, _ in rest]) == ([1, 2], [4])


async def test_grades_are_replaced_removed_and_streamed_in_order(subject: Subject) -> None:
    """The mirror's grades: keys by participant, removal of the unlisted, a stream by flow and participant."""
    async with subject.uow.transaction() as unit:
        await unit.flows.save(Flow(2, "CONCLUDED"), NOW)
        await unit.flows.save(Flow(1, "CONCLUDED"), NOW)
        versions = [
            GradeVersion(2, 5, "B", None, 1),
            GradeVersion(1, 9, "C", None, 1),
            GradeVersion(1, 3, "A", None, 1),
        ]
        await unit.grades.write(versions, NOW)
        await unit.grades.remove_except(1, [3])
        assert await unit.grades.keys(1) == {3: versions[2].idempotency_key}
    async with subject.uow.read() as unit:
        assert [(g.flow_id, g.participant_id) async for g in unit.grades.stream()] == [(1, 3), (2, 5)]


async def test_the_outbox_queues_each_version_once_and_a_return_again(subject: Subject) -> None:
    """B, B again (nothing), C, then B again under a key of its own; one due row per participant, in order."""
    b, c = GradeVersion(1, 1, "B", None, 1), GradeVersion(1, 1, "C", None, 2)
    async with subject.uow.transaction() as unit:
        added = [await unit.outbox.enqueue([v], NOW) for v in (b, b, c, b)]
        added.append(await unit.outbox.enqueue([GradeVersion(1, 2, None, None, None)], NOW))  # ungraded
    assert added == [1, 0, 1, 1, 0]
    keys = []
    for _ in range(3):
        async with subject.uow.transaction() as unit:
            (item,) = await unit.outbox.due(NOW)
            keys.append(item.idempotency_key)
            await unit.outbox.mark_delivered(item.id, NOW)
    assert keys == [b.idempotency_key, c.idempotency_key, f"{b.idempotency_key}-3"]
    async with subject.uow.read() as unit:
        assert (await unit.outbox.due(NOW), await unit.outbox.next_due_at()) == ([], None)
        assert await unit.outbox.counts() == {"delivered": 3}


async def test_a_withdrawal_follows_a_grade_and_only_a_grade(subject: Subject) -> None:
    """An ungraded version queues its withdrawal only after a grade, once; a grade given back goes again."""
    b, withdrawn = GradeVersion(1, 1, "B", None, 1), GradeVersion(1, 1, None, None, 5)
    async with subject.uow.transaction() as unit:
        assert await unit.outbox.enqueue([GradeVersion(1, 2, None, None, None)], NOW) == 0  # never graded
        added = [await unit.outbox.enqueue([v], NOW) for v in (b, withdrawn, withdrawn, b, withdrawn)]
        assert added == [1, 1, 0, 1, 1]
        assert await unit.outbox.withdrawals() == 2
    keys, records = [], []
    for _ in range(4):
        async with subject.uow.transaction() as unit:
            (item,) = await unit.outbox.due(NOW)
            keys.append(item.idempotency_key)
            records.append(item.payload)
            await unit.outbox.mark_delivered(item.id, NOW)
    gone = withdrawn.sink_key
    assert keys == [b.idempotency_key, gone, f"{b.idempotency_key}-3", f"{gone}-4"]
    assert gone.startswith("wfs-withdrawn-v1-")
    assert records[1] == {
        "flowId": 1,
        "participantId": 1,
        "grade": None,
        "adminGrade": None,
        "date": None,
        "withdrawn": True,
    }


async def test_a_dead_grade_is_replayed_unless_a_newer_one_went(subject: Subject) -> None:
    """Participant 1's dead grade stays dead behind its delivered newer one; participant 2's goes again."""
    async with subject.uow.transaction() as unit:
        outbox = unit.outbox
        await outbox.enqueue([GradeVersion(1, 1, "F", None, 1), GradeVersion(1, 2, "C", None, 1)], NOW)
        await outbox.enqueue([GradeVersion(1, 1, "E", None, 2)], NOW)
        first, second = await outbox.due(NOW)
        await outbox.mark_refused(first.id, NOW + 5, "refused")
        await outbox.mark_dead(first.id, "refused for good")
        await outbox.mark_dead(second.id, "refused for good")
        (newer,) = await outbox.due(NOW)
        await outbox.mark_delivered(newer.id, NOW)
        letters = await outbox.dead_letters()
        assert [(d.id, d.participant_id, d.attempts) for d in letters] == [(first.id, 1, 2), (second.id, 2, 1)]
        assert await outbox.replay(None) == Replay(requeued=1, superseded=1, status="dead")
        assert (await outbox.replay(999)).status is None
        assert [i.id for i in await outbox.due(NOW)] == [second.id]


async def test_an_event_waiting_for_its_retry_holds_back_its_flow_only(subject: Subject) -> None:
    """Flow 10's failed head blocks its later event until due; flow 20 goes; dead after max attempts."""
    for sequence, flow_id in ((1, 10), (2, 10), (3, 20)):
        await subject.receive(sequence, flow_id)
    async with subject.uow.transaction() as unit:
        assert await unit.inbox.mark_failed([1], "boom", NOW + 60, max_attempts=2) == []
        assert [r.sequence for r in await unit.inbox.pending(NOW)] == [3]
        assert await unit.inbox.next_retry_at(NOW) == NOW + 60
        assert [r.sequence for r in await unit.inbox.pending(NOW + 60)] == [1, 2, 3]
        await unit.inbox.defer([3], NOW + 5)
        assert await unit.inbox.mark_failed([1], "boom", NOW + 120, max_attempts=2) == [1]
        await unit.inbox.record_refreshes([(10, ["FINAL_GRADE"], NOW)])
        assert await unit.inbox.mark_answered(NOW, 100) == [NOW]
        assert await unit.inbox.refreshed_at(10, ["FINAL_GRADE", "ASSESSMENT"]) == NOW
        assert await unit.inbox.refreshed_at(10, ["FLOW_STATE_UPDATED"]) is None
        assert await unit.inbox.counts() == {"dead": 1, "done": 1, "pending": 1, "deliveries": 3}
        (letter,) = await unit.inbox.dead_letters()
        assert (letter.id, letter.item, letter.flow_id, letter.attempts) == (1, "FINAL_GRADE", 10, 2)
        replay = await unit.inbox.replay(1)
        assert (replay.requeued, replay.superseded, replay.status) == (1, 0, "dead")
        assert (await unit.inbox.replay(1)).status == "pending"
        assert await unit.inbox.last_delivery_at() == NOW


async def test_a_redelivery_is_absorbed_and_a_reused_sequence_is_a_new_event(subject: Subject) -> None:
    """Same identity within the window: one event; another flow or kind, or after the window: new rows."""
    assert await subject.receive(5, 10)
    assert not await subject.receive(5, 10, at=NOW + 60, delivery="again")
    assert await subject.receive(5, 20, "FLOW_STATE_UPDATED")
    assert await subject.receive(5, 10, at=NOW + 4 * 3600)  # the same identity long after any redelivery
    async with subject.uow.read() as unit:
        rows = await unit.inbox.pending(NOW + 4 * 3600)
        assert [(r.id, r.sequence, r.flow_id) for r in rows] == [(1, 5, 10), (2, 5, 20), (3, 5, 10)]
        assert (await unit.inbox.counts())["deliveries"] == 4
        assert await unit.inbox.last_delivery_at() == NOW + 4 * 3600


async def test_runs_are_started_finished_and_abandoned(subject: Subject) -> None:
    """A run left running by a dead process is interrupted; the last success is the latest ok run's end."""
    async with subject.uow.transaction() as unit:
        first = await unit.runs.start(NOW, "sync")
        await unit.runs.record_requests(first, {"GET /flow/{id}": 3})
        await unit.runs.finish(first, NOW + 10, "ok", RunCounters(api_calls=3), None)
        await unit.runs.start(NOW + 20, "sync")
        assert await unit.runs.abandon_running(NOW + 30) == 1
        assert await unit.runs.last_success_at() == NOW + 10


async def test_mirror_writes_report_what_they_added_changed_and_removed(subject: Subject) -> None:
    """Each write of flows, participants and grades says what it did; a refused one says None."""
    async with subject.uow.transaction() as unit:
        flows, grades = unit.flows, unit.grades
        assert await flows.save(Flow(1, "ACTIVATED"), NOW) == Changes(added=1)
        assert await flows.save(Flow(1, "ACTIVATED"), NOW + 1) == Changes()  # seen again, nothing new
        assert await flows.save(Flow(1, "CONCLUDED"), NOW + 2) == Changes(changed=1)
        assert await flows.save(Flow(1, "ARCHIVED"), NOW, clock=-1) is None  # fetched before the last write
        people = [Participant(1, 10, user_id=1), Participant(1, 11, user_id=2), Participant(1, 12)]
        assert await grades.replace_participants(1, people, NOW) == Changes(added=3)
        people = [Participant(1, 10, user_id=1), Participant(1, 11, user_id=3), Participant(1, 13)]
        assert await grades.replace_participants(1, people, NOW) == Changes(1, 1, 1)
        first = [GradeVersion(1, 10, "A", None, 1), GradeVersion(1, 11, None, None, None)]
        assert await grades.write(first, NOW) == Changes(added=2)
        assert await grades.write(
            [GradeVersion(1, 11, "B", None, 2), GradeVersion(1, 13, "C", None, 2)], NOW
        ) == (Changes(added=1, changed=1))
        assert await grades.remove_except(1, [10, 13]) == Changes(removed=1)
        assert await grades.remove_except(1, [10, 13]) == Changes()
        assert not await flows.delete(1, -1)
        removed = MirrorCounts(Changes(removed=1), Changes(removed=3), Changes(removed=2))
        assert await flows.delete(1, await flows.state_clock()) == removed


async def test_runs_are_listed_newest_first_as_recorded(subject: Subject) -> None:
    """`latest`: newest first, with command, times, outcome, requests, mirror counts and a one-line error."""
    counts = MirrorCounts(Changes(2, 1, 0), Changes(50, 0, 1), Changes(40, 3, 2), queued=43)
    async with subject.uow.transaction() as unit:
        first = await unit.runs.start(NOW, "sync")
        await unit.runs.finish(first, NOW + 10, "ok", RunCounters(api_calls=7, mirror=counts), None)
        second = await unit.runs.start(NOW + 20, "run")
        error = "ApiUnavailable: 503 on\nGET /flow/{id}"
        await unit.runs.finish(second, NOW + 25, "paused", RunCounters(api_calls=2), error)
        third = await unit.runs.start(NOW + 30, "demo")
    async with subject.uow.read() as unit:
        newest = await unit.runs.latest(2)
        assert [r.id for r in newest] == [third, second]
        running, paused = newest
        assert (running.command, running.outcome, running.finished_at, running.error) == (
            "demo",
            "running",
            None,
            None,
        )
        assert (paused.outcome, paused.requests, paused.error) == (
            "paused",
            2,
            "ApiUnavailable: 503 on GET /flow/{id}",
        )
        (ok,) = [r for r in await unit.runs.latest(20) if r.id == first]
    assert (ok.command, ok.started_at, ok.finished_at, ok.outcome, ok.requests) == (
        "sync",
        NOW,
        NOW + 10,
        "ok",
        7,
    )
    assert ok.counts == counts
    assert ok.as_json() == {
        "id": first,
        "command": "sync",
        "started_at": "2023-11-14T22:13:20.000+00:00",
        "finished_at": "2023-11-14T22:13:30.000+00:00",
        "outcome": "ok",
        "requests": 7,
        "counts": {
            "flows": {"added": 2, "changed": 1, "removed": 0},
            "participants": {"added": 50, "changed": 0, "removed": 1},
            "grades": {"added": 40, "changed": 3, "removed": 2, "queued": 43},
        },
        "error": None,
    }
