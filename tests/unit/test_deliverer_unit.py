"""The outbox deliverer over the in-memory unit of work, the SIS fake and a manual clock."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from service.core.backoff import Backoff
from service.core.clock import ManualClock
from service.core.records import GradeVersion
from service.sync.outbox import DeliveryPolicy, DeliveryResult, OutboxDeliverer
from service.sync.signals import Signals
from tests.fake_unit import FakeUnit, FakeUnitOfWork
from tests.fakes import FakeSink
from tests.virtual_time import run_virtual

POLICY = DeliveryPolicy(backoff=Backoff(1.0, 10.0, floor=1.0), max_refusals=2, batch=4, concurrency=2)


async def rig(*versions: GradeVersion) -> tuple[FakeUnitOfWork, FakeSink, ManualClock, OutboxDeliverer]:
    """An outbox holding `versions`, a SIS and a deliverer between them."""
    uow, sink, clock = FakeUnitOfWork(), FakeSink(), ManualClock()
    async with uow.transaction() as unit:
        for version in versions:
            await unit.outbox.enqueue([version], clock.wall())
    return uow, sink, clock, OutboxDeliverer(uow, sink, clock, random.Random(1), POLICY)


def grade(participant: int, value: str, date: int = 1) -> GradeVersion:
    return GradeVersion(1, participant, value, None, date)


async def test_every_row_is_delivered_once_with_its_key_in_the_order_seen() -> None:
    """Ten participants and a newer grade of one: eleven deliveries, the older grade before the newer."""
    versions = [grade(p, "B") for p in range(10)] + [grade(3, "A", 2)]
    uow, sink, _, deliverer = await rig(*versions)
    result = await deliverer.deliver_due()
    again = await deliverer.deliver_due()
    assert (result.delivered, again.delivered, result.next_due) == (11, 0, None)
    assert sorted(sink.keys) == sorted(v.idempotency_key for v in versions)
    assert [record["grade"] for record, _ in sink.deliveries if record["participantId"] == 3] == ["B", "A"]
    assert {r.status for r in uow.tables.outbox.values()} == {"delivered"}


async def test_an_unwell_sis_is_asked_again_after_the_backoff_not_per_row() -> None:
    """A 503: that row is retried after its backoff, the rest of the pass waits for it; then all go."""
    uow, sink, clock, deliverer = await rig(*(grade(p, "B") for p in range(6)))
    sink.fail_next(1, 503)
    result = await deliverer.deliver_due()
    assert result.failed == 1
    assert result.next_due is not None
    assert result.next_due > clock.wall()
    assert result.delivered < 6
    clock.advance(result.next_due - clock.wall())
    await deliverer.deliver_due()
    assert (len(sink.deliveries), max(r.attempts for r in uow.tables.outbox.values())) == (6, 2)


async def test_a_refused_grade_is_a_dead_letter_and_the_newer_one_goes() -> None:
    """Refused twice (max_refusals 2): dead; the participant's newer grade is delivered; a replay of the
    dead one is refused as superseded."""
    uow, sink, clock, deliverer = await rig(grade(1, "F"), grade(1, "E", 2))
    sink.fail_next(2, 422)
    first = await deliverer.deliver_due()
    assert first.refused == 1
    clock.advance(POLICY.backoff.cap)
    second = await deliverer.deliver_due()
    assert (second.dead, second.delivered) == (1, 1)
    assert [record["grade"] for record, _ in sink.deliveries] == ["E"]
    async with uow.transaction() as unit:
        (letter,) = await unit.outbox.dead_letters()
        replay = await unit.outbox.replay(letter.id)
    assert (replay.requeued, replay.superseded, replay.status) == (0, 1, "dead")


async def pass_at_next_due(clock: ManualClock, deliverer: OutboxDeliverer, due: float | None) -> DeliveryResult:
    """One pass when the previous one said the next is due (the run loop's own wait, on the manual clock)."""
    if due is not None:
        clock.advance(max(0.0, due - clock.wall()))
    return await deliverer.deliver_due()


async def test_a_sis_refusing_our_credentials_pauses_delivery_and_blames_no_grade(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An hour of 401s: one probe per pass, nothing dead-lettered, the pause said once (ERROR) and told to
    the gauge; fixed, the next probe (at most 30 s later) resumes and every grade goes in that pass."""
    uow, sink, clock, _ = await rig(*(grade(p, "B") for p in range(10)))
    told: list[bool] = []
    deliverer = OutboxDeliverer(uow, sink, clock, random.Random(1), POLICY, on_pause=told.append)
    sink.fail_next(100_000, 401)
    due: float | None = None
    hour_later = clock.wall() + 3600
    caplog.set_level(logging.DEBUG, logger="service.outbox")
    while clock.wall() < hour_later:
        result = await pass_at_next_due(clock, deliverer, due)
        assert result.failed <= 1  # a probe, never a request per row
        assert result.next_due is not None
        assert result.next_due - clock.wall() <= POLICY.probe_cap  # probing stays frequent
        due = result.next_due
    assert result.paused is not None
    assert "401" in result.paused
    assert {r.status for r in uow.tables.outbox.values()} == {"pending"}
    assert sink.attempts < 150  # an hour of probes 30 s apart, not ten rows' worth of retries
    paused = [
        r for r in caplog.records if getattr(r, "event", "") == "outbox.paused" and r.levelno > logging.DEBUG
    ]
    assert [(r.levelno, r.status) for r in paused] == [(logging.ERROR, 401)]  # type: ignore[attr-defined]
    assert told == [True]
    sink.heal()
    fixed_at = clock.wall()
    result = await pass_at_next_due(clock, deliverer, due)
    assert (result.delivered, result.paused, result.next_due) == (10, None, None)
    assert clock.wall() - fixed_at <= POLICY.probe_cap
    assert told == [True, False]
    assert [r.event for r in caplog.records if r.getMessage().startswith("the SIS answers again")] == [  # type: ignore[attr-defined]
        "outbox.resumed"
    ]


async def test_a_sis_retry_after_times_the_next_probe() -> None:
    """A 503 with Retry-After 120: no probe before it; a 429 after it honours its own, then all go."""
    uow, sink, clock, deliverer = await rig(*(grade(p, "B") for p in range(3)))
    sink.fail_next(1, 503, retry_after=120.0)
    first = await deliverer.deliver_due()
    assert first.next_due == clock.wall() + 120.0
    clock.advance(60.0)
    assert (await deliverer.deliver_due(), sink.attempts) == (
        DeliveryResult(next_due=first.next_due, paused=first.paused),
        1,
    )
    sink.fail_next(1, 429, retry_after=7.0)
    second = await pass_at_next_due(clock, deliverer, first.next_due)
    assert second.next_due == clock.wall() + 7.0
    third = await pass_at_next_due(clock, deliverer, second.next_due)
    assert (third.delivered, sink.attempts) == (3, 5)


async def test_a_refusal_of_one_record_pauses_nothing() -> None:
    """A 422 is the record's fault: the others are delivered in the same pass, and no pause is said."""
    uow, sink, clock, deliverer = await rig(*(grade(p, "B") for p in range(3)))
    sink.fail_next(1, 422)
    result = await deliverer.deliver_due()
    assert (result.delivered, result.refused, result.paused) == (2, 1, None)


async def test_after_an_hour_of_an_unwell_sis_every_grade_goes_within_half_a_minute_of_its_return() -> None:
    """An hour of 503s: at every moment the next probe is at most 30 s away (before the pause each row backed
    off on its own, up to 300 s), and once the SIS is back that probe delivers all the rows at once."""
    uow, sink, clock, _ = await rig(*(grade(p, "B") for p in range(20)))
    deliverer = OutboxDeliverer(uow, sink, clock, random.Random(1), DeliveryPolicy())  # the shipped policy
    sink.fail_next(100_000, 503)
    hour_later, due, waits = clock.wall() + 3600, None, []
    while clock.wall() < hour_later:
        due = (await pass_at_next_due(clock, deliverer, due)).next_due
        assert due is not None
        waits.append(due - clock.wall())
    assert max(waits) <= DeliveryPolicy().probe_cap
    sink.heal()
    fixed_at = clock.wall()
    result = await pass_at_next_due(clock, deliverer, due)
    assert (result.delivered, clock.wall() - fixed_at <= DeliveryPolicy().probe_cap) == (20, True)


class LateCommit(FakeUnitOfWork):
    """A unit of work where, once, a grade is queued (and signalled) right after a pass's last read."""

    def __init__(self, signals: Signals) -> None:
        super().__init__()
        self.signals = signals
        self.reads = 0

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeUnit]:
        async with super().read() as unit:
            yield unit
        self.reads += 1
        if self.reads == 2:  # the first pass read `due` (nothing) and `next_due_at` (None): it is over
            async with self.transaction() as writing:
                queued = await writing.outbox.enqueue([grade(1, "B")], 0.0)
            self.signals.queued(queued)


class FlaggingSink(FakeSink):
    """The SIS fake, with an event set at each delivery."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered = asyncio.Event()

    async def deliver(self, record: dict[str, object], idempotency_key: str) -> None:
        await super().deliver(record, idempotency_key)
        self.delivered.set()


def test_a_grade_queued_as_a_pass_ends_is_delivered_at_once_not_after_the_idle_wait() -> None:
    """The lost wake: a grade queued and signalled after a pass's last read starts the next pass at once.

    On virtual time: the deliverer's old loop cleared its wake-up after the pass and delivered this grade
    only after the idle interval (loop time 3600).
    """

    async def scenario() -> float:
        signals, sink, clock = Signals(), FlaggingSink(), ManualClock()
        policy = DeliveryPolicy(idle_interval=3600.0)  # only the wake-up can explain a prompt delivery
        uow = LateCommit(signals)
        deliverer = OutboxDeliverer(uow, sink, clock, random.Random(4), policy, wake=signals.outbox)
        running = asyncio.create_task(deliverer.run())
        await sink.delivered.wait()
        running.cancel()
        return asyncio.get_running_loop().time()

    assert run_virtual(scenario()) == pytest.approx(0.0, abs=1e-3)
