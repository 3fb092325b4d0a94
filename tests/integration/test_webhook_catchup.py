"""The blind-spot fallback over a real SQLite file: downtime and silence trigger a catch-up of active flows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.store.unit import SqliteUnit, SqliteUnitOfWork
from service.app import SERVICE, build_app
from service.core.clock import ManualClock
from service.core.records import Flow
from service.core.webhook_events import WebhookEvent
from service.errors import CircuitOpen
from service.settings import load_settings
from service.sync.catchup import HEARTBEAT, CatchUp
from service.sync.signals import Signals
from tests.integration.test_webhook_worker import FakeRefresher
from tests.waiting import wait_until

T0 = 1_700_000_000.0
HORIZON = 7200.0
# Flow 1 (running) is caught up, once: its state, then participants with grades. 2 is archived; 3 concluded
# long before any gap here, so it produced no event to miss.
EVERY_REFRESH = [("flow", 1), ("participants", 1)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "catchup.sqlite3")
    try:
        async with s.transaction() as db:
            for flow in (
                Flow(1, "PARTICIPATION_STARTED", participation_start=int(T0) - 10_000),
                Flow(2, "ARCHIVED"),
                Flow(3, "CONCLUDED", participation_start=0, participation_end=5, marking_end=10),
            ):
                await SqliteUnit(db).flows.save(flow, T0)
        yield s
    finally:
        await s.close()


def _catchup(store: Store, clock: ManualClock, refresher: FakeRefresher) -> CatchUp:
    return CatchUp(SqliteUnitOfWork(store), refresher, Signals(), clock, horizon=HORIZON)


async def _heartbeat(store: Store, at: float) -> None:
    """The heartbeat a previous process left."""
    async with SqliteUnitOfWork(store).transaction() as unit:
        await unit.checkpoints.set(HEARTBEAT, at, at)


async def test_long_downtime_catches_up_active_flows_at_start(store: Store) -> None:
    """A previous heartbeat older than the horizon makes start() refresh every flow active in the gap."""
    clock = ManualClock(start=T0)
    await _heartbeat(store, T0 - HORIZON - 1)
    refresher = FakeRefresher()
    gap = await _catchup(store, clock, refresher).start()
    assert gap is not None
    assert gap.cause == "downtime"
    assert refresher.calls == EVERY_REFRESH


async def test_short_downtime_needs_no_catch_up(store: Store) -> None:
    """Down for less than the horizon: WISEflow redelivers, nothing is refreshed."""
    clock = ManualClock(start=T0)
    await _heartbeat(store, T0 - 60)
    refresher = FakeRefresher()
    assert await _catchup(store, clock, refresher).start() is None
    assert refresher.calls == []


async def test_silence_beyond_the_horizon_catches_up_once(store: Store) -> None:
    """No delivery for longer than the horizon while a flow is active: one catch-up, then quiet again."""
    clock = ManualClock(start=T0)
    refresher = FakeRefresher()
    catchup = _catchup(store, clock, refresher)
    await catchup.start()
    clock.advance(HORIZON)
    assert await catchup.check() is None
    clock.advance(1)
    gap = await catchup.check()
    assert gap is not None
    assert gap.cause == "silence"
    assert refresher.calls == EVERY_REFRESH
    clock.advance(60)
    assert await catchup.check() is None
    assert (refresher.calls, catchup.catchups) == (EVERY_REFRESH, 1)


async def test_a_delivery_resets_the_silence(store: Store) -> None:
    """A webhook delivery (even a duplicate) proves we are not blind."""
    clock = ManualClock(start=T0)
    refresher = FakeRefresher()
    catchup = _catchup(store, clock, refresher)
    await catchup.start()
    clock.advance(HORIZON - 10)
    await Inbox(store).record(
        WebhookEvent("d", 1, "FINAL_GRADE", int(T0), 1, None), b"{}", "pending", clock.wall()
    )
    clock.advance(20)
    assert await catchup.check() is None
    assert refresher.calls == []


async def test_an_interrupted_catch_up_is_retried(store: Store) -> None:
    """When the breaker is open during a catch-up, the next check tries again until it completes."""
    clock = ManualClock(start=T0)
    await _heartbeat(store, T0 - HORIZON - 1)
    refresher = FakeRefresher()
    refresher.fail = 1
    refresher.error = CircuitOpen("http://api", 5.0, "maintenance")
    catchup = _catchup(store, clock, refresher)
    await catchup.start()
    assert refresher.calls == []
    clock.advance(60)
    await catchup.check()
    assert refresher.calls == EVERY_REFRESH
    clock.advance(60)
    await catchup.check()
    assert refresher.calls == EVERY_REFRESH


async def test_a_quiet_night_costs_nothing(tmp_path: Path) -> None:
    """Hours of silence while no flow is in participation or marking: gaps are noted, nothing is fetched."""
    store = await Store.open(tmp_path / "quiet.sqlite3")
    try:
        async with store.transaction() as db:
            flows = SqliteUnit(db).flows
            await flows.save(Flow(1, "CONCLUDED", marking_start=0, marking_end=10), T0)
            await flows.save(Flow(2, "ACTIVATED", participation_start=int(T0) + 86_400 * 30), T0)
        clock, refresher = ManualClock(start=T0), FakeRefresher()
        catchup = _catchup(store, clock, refresher)
        await catchup.start()
        for _ in range(4):  # eight hours, four silent gaps
            clock.advance(HORIZON + 1)
            assert await catchup.check() is not None
        assert refresher.calls == []
    finally:
        await store.close()


async def test_the_running_service_starts_the_catch_up(tmp_path: Path) -> None:
    """build_app with its loops: the catch-up loop runs (a task) and writes its first heartbeat at startup."""
    database = tmp_path / "app.sqlite3"
    env = {
        # Nothing listens there: the poll loop just fails and waits, which this test does not look at.
        "WISEFLOW_API_URL": "http://127.0.0.1:9/v1",
        "WISEFLOW_API_KEY": "k",
        "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        "SYNC_DATABASE": str(database),
    }
    async with TestClient(TestServer(build_app(load_settings(env)), host="127.0.0.1")) as client:
        service = client.server.app[SERVICE]
        assert "wiseflow-sync:catchup" in {task.get_name() for task in service.tasks}

        async def heartbeat_written() -> bool:
            async with service.uow.read() as unit:
                return await unit.checkpoints.get(HEARTBEAT) is not None

        # The loop's first step is start(), which writes the heartbeat.
        await wait_until(heartbeat_written, what="the catch-up's first heartbeat")
