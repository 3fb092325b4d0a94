"""The inbox worker over the in-memory unit of work, the real flow refresh on the WISEflow fake, and the
deliverer it wakes: a webhook's whole path to the SIS without a database, a server or a sleep."""

from __future__ import annotations

import random

from service.core.backoff import Backoff
from service.core.clock import ManualClock
from service.core.planner import PlanPolicy
from service.core.webhook_events import WebhookEvent
from service.errors import ApiError, CircuitOpen
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller
from service.sync.signals import Signals
from tests.fake_unit import FakeUnitOfWork
from tests.fakes import FakeSink, FakeWiseflowApi

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, search_page=10, participants_page=10)
A = {"grade": "A", "adminGrade": None, "date": 1_700_000_900}


class Rig:
    """A mirrored world of two flows, the worker, the deliverer and the signals between them."""

    def __init__(self) -> None:
        self.api, self.uow, self.clock = FakeWiseflowApi(page=10), FakeUnitOfWork(), ManualClock()
        for flow_id in (1, 2):
            self.api.add_flow(flow_id, participants=3)
        self.signals, self.sink = Signals(), FakeSink()
        self.poller = Poller(self.api, self.uow, self.clock, random.Random(1), POLICY)
        policy = WorkerPolicy(max_attempts=2, backoff=Backoff(1.0, 10.0), idle_interval=5.0)
        rng = random.Random(2)
        self.worker = InboxWorker(self.uow, self.poller.refresh, self.signals, self.clock, policy, rng=rng)
        self.deliverer = OutboxDeliverer(self.uow, self.sink, self.clock, rng, wake=self.signals.outbox)
        self.sequence = 0

    async def start(self) -> None:
        """The first run mirrors both flows; the deliverer sends what it queued."""
        assert (await self.poller.run_once()).outcome == "ok"
        await self.deliverer.deliver_due()
        self.sink.deliveries.clear()
        self.api.requests.clear()

    def receive(self, event: str, flow_id: int) -> int:
        """A webhook committed by the receiver, as `Signals.stored` follows it."""
        self.sequence += 1
        self.uow.receive(
            WebhookEvent(f"d{self.sequence}", self.sequence, event, 0, flow_id, 1), self.clock.wall()
        )
        self.signals.stored()
        return self.sequence

    def statuses(self) -> dict[int, str]:
        return {s: row.status for s, row in self.uow.tables.inbox.items()}


async def test_a_grade_webhook_reaches_the_sis_through_one_refresh_and_one_signal() -> None:
    """FINAL_GRADE: the worker refreshes the flow's grades, queues the changed one, wakes the deliverer
    (`Signals.queued`), and the deliverer sends exactly that grade with its key."""
    rig = Rig()
    await rig.start()
    rig.api.flows[2].grades[2001] = A
    rig.receive("FINAL_GRADE", 2)
    result = await rig.worker.run_once()
    assert (result.processed, rig.statuses(), rig.api.requests) == (1, {1: "done"}, [("assessments", 2)])
    assert rig.signals.outbox.is_set()
    delivered = await rig.deliverer.deliver_due()
    assert delivered.delivered == 1
    assert [(record["participantId"], record["grade"]) for record, _ in rig.sink.deliveries] == [(2001, "A")]


async def test_a_refresh_that_queued_nothing_does_not_wake_the_deliverer() -> None:
    """A grade event whose grades are unchanged, and a flow event: events done, no outbox signal."""
    rig = Rig()
    await rig.start()
    rig.receive("ASSESSMENT", 1)
    rig.receive("FLOW_STATE_UPDATED", 2)
    result = await rig.worker.run_once()
    assert (result.processed, rig.signals.outbox.is_set()) == (2, False)
    assert sorted(rig.api.requests) == [("assessments", 1), ("get_flow", 2)]


async def test_an_open_breaker_defers_the_events_without_an_attempt() -> None:
    """WISEflow cannot be used: the pass stops, every event waits an idle interval, none is charged."""
    rig = Rig()
    await rig.start()
    rig.api.fail_when(lambda r: r[0] == "assessments", CircuitOpen("http://api", 30.0, "down"))
    first, second = rig.receive("FINAL_GRADE", 1), rig.receive("FINAL_GRADE", 2)
    result = await rig.worker.run_once()
    assert result.next_due == rig.clock.wall() + 5.0
    rows = [rig.uow.tables.inbox[s] for s in (first, second)]
    assert [(r.status, r.attempts, r.next_attempt_at) for r in rows] == [("pending", 0, result.next_due)] * 2
    rig.clock.advance(5.0)
    assert (await rig.worker.run_once()).processed == 2


async def test_an_event_that_keeps_failing_is_a_dead_letter_until_replayed() -> None:
    """A 403 on the flow's grades twice (max_attempts 2): dead; replayed, it is processed."""
    rig = Rig()
    await rig.start()
    rig.api.fail_when(lambda r: r[0] == "assessments", ApiError("forbidden", status=403), times=2)
    sequence = rig.receive("FINAL_GRADE", 1)
    assert (await rig.worker.run_once()).failed == 1
    rig.clock.advance(10.0)
    assert (await rig.worker.run_once()).dead == 1
    async with rig.uow.transaction() as unit:
        assert [d.id for d in await unit.inbox.dead_letters()] == [sequence]
        assert (await unit.inbox.replay(sequence)).requeued == 1
    assert (await rig.worker.run_once()).processed == 1
    assert rig.statuses() == {sequence: "done"}


async def test_a_withdrawn_grade_reaches_the_sis_as_an_explicit_record_once() -> None:
    """A delivered grade whose assessment disappears, and one whose grade becomes empty: each goes to the SIS
    as `{grade: null, ..., withdrawn: true}` under a withdrawal key, once; a grade never sent is not
    withdrawn; the same grade given again is sent again."""
    rig = Rig()
    await rig.start()
    rig.api.flows[2].grades.update({2001: A, 2002: {**A, "grade": "B"}})
    rig.receive("FINAL_GRADE", 2)
    await rig.worker.run_once()
    assert (await rig.deliverer.deliver_due()).delivered == 2
    del rig.api.flows[2].grades[2001]
    rig.api.flows[2].grades[2002] = {"grade": "", "adminGrade": None, "date": 1_700_000_950}
    rig.api.flows[2].grades[2004] = {"grade": None, "adminGrade": None, "date": None}  # never graded
    rig.clock.advance(1.0)
    rig.receive("FINAL_GRADE", 2)
    await rig.worker.run_once()
    assert rig.signals.outbox.is_set()
    assert (await rig.deliverer.deliver_due()).delivered == 2
    withdrawn = rig.sink.deliveries[2:]
    expected = {"grade": None, "adminGrade": None, "date": None, "withdrawn": True}
    assert [record for record, _ in withdrawn] == [
        {"flowId": 2, "participantId": p, **expected} for p in (2001, 2002)
    ]
    assert all(key.startswith("wfs-withdrawn-v1-") for _, key in withdrawn)
    async with rig.uow.read() as unit:
        assert await unit.outbox.withdrawals() == 2
    rig.clock.advance(1.0)
    rig.receive("FINAL_GRADE", 2)  # nothing changed since: nothing is withdrawn twice
    await rig.worker.run_once()
    assert (await rig.deliverer.deliver_due()).delivered == 0
    rig.api.flows[2].grades[2001] = A  # given back: the SIS, which cleared it, gets it again
    rig.clock.advance(1.0)
    rig.receive("FINAL_GRADE", 2)
    await rig.worker.run_once()
    assert (await rig.deliverer.deliver_due()).delivered == 1
    assert rig.sink.deliveries[-1][0] == {
        "flowId": 2,
        "participantId": 2001,
        **{k: A[k] for k in ("grade", "adminGrade", "date")},
    }
