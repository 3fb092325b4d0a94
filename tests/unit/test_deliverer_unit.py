"""The outbox deliverer over the in-memory unit of work, the SIS fake and a manual clock."""

from __future__ import annotations

import random

from service.core.clock import ManualClock
from service.core.records import GradeVersion
from service.sync.outbox import DeliveryPolicy, OutboxDeliverer
from tests.fake_unit import FakeUnitOfWork
from tests.fakes import FakeSink

POLICY = DeliveryPolicy(base=1.0, cap=10.0, max_refusals=2, batch=4, concurrency=2)


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
    clock.advance(POLICY.cap)
    second = await deliverer.deliver_due()
    assert (second.dead, second.delivered) == (1, 1)
    assert [record["grade"] for record, _ in sink.deliveries] == ["E"]
    async with uow.transaction() as unit:
        (letter,) = await unit.outbox.dead_letters()
        replay = await unit.outbox.replay(letter.id)
    assert (replay.requeued, replay.superseded, replay.status) == (0, 1, "dead")
