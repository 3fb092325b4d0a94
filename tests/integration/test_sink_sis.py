"""The SIS sink and the deliverer against the simulator's fake SIS on loopback (issue 13, findings 1 and 8).

Each test drives the real `HttpSink` over HTTP into `/_sis/grades`, told by `/_sis/scenario` how to answer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from service.adapters.sink import HttpSink
from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.backoff import Backoff
from service.core.clock import ManualClock
from service.core.records import GradeVersion
from service.errors import SinkError
from service.settings import Secret
from service.sync.outbox import DeliveryPolicy, OutboxDeliverer
from tests.conftest import SimHandle

POLICY = DeliveryPolicy(backoff=Backoff(1.0, 10.0, floor=1.0), max_refusals=3, batch=100, concurrency=4)
RECORD = {"flowId": 1, "participantId": 7, "grade": "B", "adminGrade": None, "date": 100}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sink.sqlite3")
    yield s
    await s.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def queue(store: Store, versions: list[GradeVersion]) -> None:
    async with SqliteUnitOfWork(store).transaction() as unit:
        await unit.outbox.enqueue(versions, 0.0)


def grades(participants: range, grade: str = "B") -> list[GradeVersion]:
    return [GradeVersion(1, p, grade, None, 100) for p in participants]


def deliverer_for(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store, clock: ManualClock
) -> OutboxDeliverer:
    """The deliverer on `store`, sending to the fake SIS."""
    return OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), clock, random.Random(1), POLICY
    )


async def received(simulator: SimHandle) -> list[int]:
    """The participant ids the fake SIS recorded, in order."""
    return [d["participantId"] for d in (await simulator.sis_grades())["deliveries"]]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failure_never_followed(
    simulator: SimHandle, session: aiohttp.ClientSession, status: int
) -> None:
    """A 3xx is not followed (a 301 would re-send the POST as a GET whose 2xx looks delivered): SinkError
    with the status and the configured URL, and the SIS recorded nothing."""
    await simulator.sis_scenario({"redirect": {"status": status, "location": "/_sis/grades"}})
    url = simulator.sis_url + "?token=hidden"
    with pytest.raises(SinkError) as caught:
        await HttpSink(url, session).deliver(RECORD, "key-redirect")
    assert caught.value.status == status
    assert not caught.value.refused  # a misdirected SIS affects every record: retried, never dead-lettered
    assert simulator.sis_url + "?..." in str(caught.value)
    assert "hidden" not in str(caught.value)
    assert (await simulator.sis_grades())["deliveries"] == []


async def test_a_redirected_grade_stays_queued(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the deliverer: a 301 leaves the row pending (before the fix it was marked delivered), and
    the log line names the status and the configured URL."""
    await simulator.sis_scenario({"redirect": {"status": 301}})
    await queue(store, grades(range(1, 2)))
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), ManualClock(), random.Random(1)
    )
    result = await deliverer.deliver_due()
    assert (result.delivered, result.failed) == (0, 1)
    assert await fetch_value(store.db, "SELECT status FROM outbox") == "pending"
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "outbox.paused"]
    assert getattr(line, "status", None) == 301
    assert simulator.sis_url in getattr(line, "error", "")


async def test_an_endless_answer_body_is_not_read_to_its_end(
    simulator: SimHandle, session: aiohttp.ClientSession
) -> None:
    """A 201 whose body never ends is a delivery: the answer is read only up to a bound."""
    await simulator.sis_scenario({"endless_body": True})
    await HttpSink(simulator.sis_url, session, timeout=5.0).deliver(RECORD, "key-endless")
    assert await received(simulator) == [7]


@pytest.mark.parametrize("status", [429, 503])
async def test_the_sis_retry_after_is_honoured(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store, status: int
) -> None:
    """A Retry-After of 120 s puts the next attempt at least 120 s away (the backoff alone says ~1 s)."""
    await simulator.sis_scenario({"answer": {"status": status, "retry_after": 120}})
    await queue(store, grades(range(1, 3)))
    clock = ManualClock()
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), clock, random.Random(1), POLICY
    )
    result = await deliverer.deliver_due()
    assert result.failed >= 1
    assert result.next_due is not None
    assert result.next_due >= clock.wall() + 120
    assert await fetch_value(store.db, "SELECT min(next_attempt_at) FROM outbox WHERE attempts > 0") >= (
        clock.wall() + 120
    )


async def test_a_bearer_token_is_sent(simulator: SimHandle, session: aiohttp.ClientSession) -> None:
    """SYNC_SINK_TOKEN goes out as `Authorization: Bearer`; without it the SIS refuses (401)."""
    await simulator.sis_scenario({"token": "sis-token-1"})
    with pytest.raises(SinkError) as caught:
        await HttpSink(simulator.sis_url, session).deliver(RECORD, "key-anon")
    assert caught.value.status == 401
    await HttpSink(simulator.sis_url, session, token=Secret("sis-token-1")).deliver(RECORD, "key-token")
    assert await received(simulator) == [7]


@pytest.mark.parametrize("secret", ["sis-signing-secret", "whsec_c2lzLXNpZ25pbmctc2VjcmV0"])
async def test_deliveries_are_signed_the_standard_webhooks_way(
    simulator: SimHandle, session: aiohttp.ClientSession, secret: str
) -> None:
    """SYNC_SINK_SECRET signs id.timestamp.body, webhook-id = Idempotency-Key; a wrong secret is refused."""
    await simulator.sis_scenario({"secret": secret})
    with pytest.raises(SinkError) as caught:
        await HttpSink(simulator.sis_url, session, secret=Secret("another")).deliver(RECORD, "key-bad")
    assert caught.value.status == 401
    sink = HttpSink(simulator.sis_url, session, secret=Secret(secret))
    await sink.deliver(RECORD, "wfs-grade-v1-abc-2")
    assert [d["idempotencyKey"] for d in (await simulator.sis_grades())["deliveries"]] == ["wfs-grade-v1-abc-2"]


async def test_one_refused_participant_never_delays_the_others(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store
) -> None:
    """Participant 1 answered 422: the nine others are delivered in the same pass (measured bug: they
    waited behind its backoff), and participant 1 is tried again later, not dropped."""
    await simulator.sis_scenario({"refuse": {"1": 422}})
    await queue(store, grades(range(1, 11)))
    clock = ManualClock()
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), clock, random.Random(1), POLICY
    )
    result = await deliverer.deliver_due()
    assert (result.delivered, result.refused, result.failed, result.dead) == (9, 1, 0, 0)
    assert sorted(await received(simulator)) == list(range(2, 11))
    assert result.next_due is not None
    assert result.next_due > clock.wall()


async def test_a_refused_grade_is_dead_lettered_then_newer_versions_proceed(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store
) -> None:
    """After `max_refusals` 4xx the row is dead (counted by status) and the participant's next grade goes."""
    await simulator.sis_scenario({"refuse": {"1": 422}})
    await queue(store, grades(range(1, 2), "F"))
    await queue(store, grades(range(1, 2), "E"))
    clock = ManualClock()
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), clock, random.Random(1), POLICY
    )
    dead = 0
    for _ in range(POLICY.max_refusals):
        dead += (await deliverer.deliver_due()).dead
        clock.advance(POLICY.backoff.cap)
    assert dead == 1
    async with SqliteUnitOfWork(store).read() as unit:
        assert (await unit.outbox.counts()).get("dead") == 1
        letters = await unit.outbox.dead_letters()
    assert [(d.participant_id, d.attempts) for d in letters] == [(1, POLICY.max_refusals)]
    assert "422" in (letters[0].last_error or "")
    await simulator.sis_scenario({"reset": True})
    assert (await deliverer.deliver_due()).delivered == 1
    assert [d["grade"] for d in (await simulator.sis_grades())["deliveries"]] == ["E"]


async def test_an_unwell_sis_is_not_a_refusal(
    simulator: SimHandle, session: aiohttp.ClientSession, store: Store
) -> None:
    """408, 429 and 5xx, however often, never dead-letter a grade: the SIS is unwell, the grade is fine."""
    await simulator.sis_scenario({"answer": {"status": 500}})
    await queue(store, grades(range(1, 2)))
    clock = ManualClock()
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store), HttpSink(simulator.sis_url, session), clock, random.Random(1), POLICY
    )
    for _ in range(POLICY.max_refusals + 2):
        assert (await deliverer.deliver_due()).dead == 0
        clock.advance(POLICY.backoff.cap)
    assert await fetch_value(store.db, "SELECT status FROM outbox") == "pending"


async def test_a_bad_sis_scenario_is_refused_and_changes_nothing(simulator: SimHandle) -> None:
    """An unknown key or a status out of range is 400; what was in force stays."""
    await simulator.sis_scenario({"refuse": {"3": 409}})
    for body in ({"refuse": {"3": 200}}, {"redirect": {"status": 200}}, {"bogus": 1}, {"refuse": {"x": 400}}):
        async with simulator.session.post(simulator.root + "/_sis/scenario", json=body) as response:
            assert response.status == 400
    assert (await simulator.sis_scenario({"endless_body": False}))["refuse"] == {"3": 409}


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ({"token": "the-right-token"}, 401),
        ({"answer": {"status": 403}}, 403),
        ({"answer": {"status": 404}}, 404),
        ({"answer": {"status": 405}}, 405),
        ({"answer": {"status": 413}}, 413),
        ({"redirect": {"status": 308, "location": "/elsewhere"}}, 308),
    ],
)
async def test_a_misconfigured_sis_pauses_delivery_and_a_fixed_one_gets_every_grade_at_the_next_probe(
    simulator: SimHandle,
    session: aiohttp.ClientSession,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    scenario: dict[str, object],
    status: int,
) -> None:
    """Many passes against a SIS refusing our token (or wrongly addressed, or sized): nothing is dead, the
    pause is one log line naming the status and the configured URL (never the token); the SIS fixed, the
    next probe (30 s at most) resumes and every grade is delivered in that pass."""
    await simulator.sis_scenario(scenario)
    await queue(store, grades(range(1, 11)))
    clock = ManualClock()
    sink = HttpSink(simulator.sis_url, session, token=Secret("our-wrong-token"))
    deliverer = OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(1), POLICY)
    caplog.set_level(logging.INFO)
    due = None
    for _ in range(30):
        if due is not None:
            clock.advance(due - clock.wall())
        result = await deliverer.deliver_due()
        assert (result.delivered, result.dead) == (0, 0)
        due = result.next_due
    assert due is not None
    assert await fetch_value(store.db, "SELECT count(*) FROM outbox WHERE status = 'pending'") == 10
    assert await fetch_value(store.db, "SELECT sum(refusals) FROM outbox") == 0
    paused = [r for r in caplog.records if getattr(r, "event", "") == "outbox.paused"]
    assert [getattr(r, "status", None) for r in paused] == [status]
    assert simulator.sis_url in getattr(paused[0], "error", "")
    assert "our-wrong-token" not in caplog.text
    await simulator.sis_scenario({"reset": True})
    fixed_at = clock.wall()
    clock.advance(due - clock.wall())
    assert (await deliverer.deliver_due()).delivered == 10
    assert clock.wall() - fixed_at <= POLICY.probe_cap
    assert sorted(await received(simulator)) == list(range(1, 11))
