"""The outbox deliverer (real SQLite, fake sink) and the HTTP sink (real aiohttp server on loopback)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.adapters.sink import HttpSink
from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.backoff import Backoff
from service.core.clock import ManualClock
from service.core.records import GradeVersion
from service.errors import SinkError
from service.sync.outbox import DeliveryPolicy, OutboxDeliverer
from tests.fakes import FakeSink

POLICY = DeliveryPolicy(backoff=Backoff(1.0, 10.0, floor=1.0), batch=4, concurrency=2)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "outbox.sqlite3")
    yield s
    await s.close()


async def queue(store: Store, versions: list[GradeVersion]) -> None:
    async with SqliteUnitOfWork(store).transaction() as unit:
        await unit.outbox.enqueue(versions, 0.0)


def versions(n: int) -> list[GradeVersion]:
    return [GradeVersion(1, p, "B", None, 100 + p) for p in range(1, n + 1)]


async def test_every_row_is_delivered_once_with_its_key(store: Store) -> None:
    """Ten pending versions: ten deliveries with their own keys, then nothing more."""
    sink, clock = FakeSink(), ManualClock()
    await queue(store, versions(10))
    deliverer = OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(1), POLICY)
    result = await deliverer.deliver_due()
    again = await deliverer.deliver_due()
    assert (result.delivered, again.delivered, result.next_due) == (10, 0, None)
    assert sorted(sink.keys) == sorted(v.idempotency_key for v in versions(10))
    assert sink.deliveries[0][0] == {
        "flowId": 1,
        "participantId": 1,
        "grade": "B",
        "adminGrade": None,
        "date": 101,
    }
    assert await fetch_value(store.db, "SELECT count(*) FROM outbox WHERE status = 'delivered'") == 10


async def test_enqueue_ignores_a_version_already_queued_and_ungraded_ones(store: Store) -> None:
    """The same version twice is one row; a version with no grade is not queued at all."""
    await queue(store, versions(2))
    await queue(store, [*versions(2), GradeVersion(1, 9, None, None, None)])
    assert await fetch_value(store.db, "SELECT count(*) FROM outbox") == 2


async def test_a_refused_delivery_is_retried_after_its_backoff(store: Store) -> None:
    """A 503 leaves the row pending with a due time in the future; after it, the row is delivered."""
    sink, clock = FakeSink(), ManualClock()
    await queue(store, versions(1))
    sink.fail_next(1, status=503)
    deliverer = OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(2), POLICY)
    first = await deliverer.deliver_due()
    assert (first.delivered, first.failed) == (0, 1)
    assert first.next_due is not None
    assert first.next_due <= clock.wall() + POLICY.backoff.cap
    assert "503" in str(await fetch_value(store.db, "SELECT last_error FROM outbox"))
    clock.advance(POLICY.backoff.cap)
    second = await deliverer.deliver_due()
    assert (second.delivered, len(sink.deliveries)) == (1, 1)
    assert await fetch_value(store.db, "SELECT attempts FROM outbox") == 2


async def test_a_failure_stops_the_batch_instead_of_trying_every_row(store: Store) -> None:
    """One refusal: the rows not yet started stay due for the next pass (a timing-out SIS costs one timeout)."""
    sink, clock = FakeSink(), ManualClock()
    await queue(store, versions(4))
    sink.fail_next(1, status=None)
    result = await OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(2), POLICY).deliver_due()
    assert (result.delivered, result.failed) == (0, 1)
    assert (
        await fetch_value(store.db, "SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts = 0")
        == 3
    )
    failed_retry = await fetch_value(store.db, "SELECT next_attempt_at FROM outbox WHERE attempts = 1")
    assert result.next_due == failed_retry  # the untried rows wait for the failed row's retry: it probes


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_4xx_is_kept_and_retried_later_never_at_once(store: Store, status: int) -> None:
    """A refused grade stays pending with a later due time: not dropped at once, and a second pass sends
    nothing."""
    sink, clock = FakeSink(), ManualClock()
    await queue(store, versions(1))
    sink.fail_next(1, status=status)
    deliverer = OutboxDeliverer(
        SqliteUnitOfWork(store),
        sink,
        clock,
        random.Random(5),
        DeliveryPolicy(backoff=Backoff(1.0, 10.0, floor=1.0)),
    )
    first = await deliverer.deliver_due()
    again = await deliverer.deliver_due()
    assert (first.refused, first.failed, again.refused, again.delivered) == (1, 0, 0, 0)
    assert first.next_due is not None
    assert first.next_due >= clock.wall() + 1.0  # never sooner than the policy's base
    assert await fetch_value(store.db, "SELECT status FROM outbox") == "pending"
    clock.advance(10.0)
    assert (await deliverer.deliver_due()).delivered == 1


class SlowSink(FakeSink):
    """A SIS that takes a moment per grade, so two deliverers would overlap."""

    async def deliver(self, record: dict[str, object], idempotency_key: str) -> None:
        await asyncio.sleep(0.002)
        await super().deliver(record, idempotency_key)


async def test_two_deliverers_on_one_database_never_send_a_row_twice(store: Store) -> None:
    """Two processes' deliverers (two connections to one file) take turns: each row reaches the SIS once."""
    await queue(store, versions(30))
    other = await Store.open(store.path)
    sink, clock = SlowSink(), ManualClock()
    try:
        one = OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(1), POLICY)
        two = OutboxDeliverer(SqliteUnitOfWork(other), sink, clock, random.Random(2), POLICY)
        results = await asyncio.gather(one.deliver_due(), two.deliver_due())
    finally:
        await other.close()
    assert sum(r.delivered for r in results) == 30
    assert sorted(sink.keys) == sorted(v.idempotency_key for v in versions(30))


async def test_a_participants_versions_are_delivered_in_order(store: Store) -> None:
    """A newer grade never overtakes an older one of the same participant that is still failing."""
    sink, clock = FakeSink(), ManualClock()
    old, new = GradeVersion(1, 1, "C", None, 1), GradeVersion(1, 1, "A", None, 2)
    await queue(store, [old])
    await queue(store, [new])
    sink.fail_next(1)
    deliverer = OutboxDeliverer(SqliteUnitOfWork(store), sink, clock, random.Random(3), POLICY)
    await deliverer.deliver_due()
    assert sink.keys == []
    clock.advance(POLICY.backoff.cap)
    await deliverer.deliver_due()
    await deliverer.deliver_due()
    assert sink.keys == [old.idempotency_key, new.idempotency_key]


@pytest.fixture
async def sis() -> AsyncIterator[tuple[TestServer, list[tuple[str, dict[str, object]]]]]:
    received: list[tuple[str, dict[str, object]]] = []

    async def grades(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("grade") == "fail":
            return web.Response(status=500, text="no")
        received.append((request.headers["Idempotency-Key"], body))
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/grades", grades)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield server, received
    await server.close()


async def test_http_sink_posts_json_with_the_idempotency_key(
    sis: tuple[TestServer, list[tuple[str, dict[str, object]]]],
) -> None:
    """A 2xx answer returns; the SIS saw the JSON body and the Idempotency-Key header."""
    server, received = sis
    async with aiohttp.ClientSession() as session:
        sink = HttpSink(str(server.make_url("/grades")), session)
        await sink.deliver({"flowId": 1, "grade": "B"}, "key-1")
    assert received == [("key-1", {"flowId": 1, "grade": "B"})]


async def test_http_sink_raises_on_a_non_2xx_answer(
    sis: tuple[TestServer, list[tuple[str, dict[str, object]]]],
) -> None:
    """A 500 is a SinkError carrying the status."""
    server, _ = sis
    async with aiohttp.ClientSession() as session:
        sink = HttpSink(str(server.make_url("/grades")), session)
        with pytest.raises(SinkError) as caught:
            await sink.deliver({"grade": "fail"}, "key-2")
    assert caught.value.status == 500


async def test_http_sink_raises_when_nobody_listens() -> None:
    """A refused connection is a SinkError without a status."""
    async with aiohttp.ClientSession() as session:
        sink = HttpSink("http://127.0.0.1:9/grades", session, timeout=2.0)
        with pytest.raises(SinkError, match="unreachable") as caught:
            await sink.deliver({"grade": "B"}, "key-3")
    assert caught.value.status is None
