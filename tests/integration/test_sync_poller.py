"""The poller against the in-memory WISEflow fake and a real SQLite file: plan, resume, change detection."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.call_forecast import run_forecast
from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.clock import ManualClock
from service.core.planner import PlanPolicy
from service.errors import ApiError, CircuitOpen
from service.sync.poller import Poller
from tests.fakes import FakeWiseflowApi

# Pages of 10 (the fake pages by 10) so small worlds still span several pages.
POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, search_page=10, participants_page=10)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sync.sqlite3")
    yield s
    await s.close()


def make_poller(api: FakeWiseflowApi, store: Store, clock: ManualClock) -> Poller:
    return Poller(api, SqliteUnitOfWork(store), clock, random.Random(7), POLICY, concurrency=3)


def world() -> FakeWiseflowApi:
    api = FakeWiseflowApi(page=10)
    for flow_id in range(1, 26):
        api.add_flow(flow_id, participants=12)
    api.add_flow(30, state="NOT_ACTIVATED", participants=0)
    return api


async def count(store: Store, sql: str) -> object:
    return await fetch_value(store.db, sql)


async def test_a_first_run_mirrors_everything_and_costs_what_the_plan_says(store: Store) -> None:
    """Every flow, participant and grade lands in the mirror and the outbox; calls match the formula."""
    api, clock = world(), ManualClock()
    summary = await make_poller(api, store, clock).run_once()
    assert summary.outcome == "ok"
    assert await count(store, "SELECT count(*) FROM flows") == 26
    assert await count(store, "SELECT count(*) FROM participants") == 25 * 12
    assert await count(store, "SELECT count(*) FROM assessments") == 25 * 12
    assert await count(store, "SELECT count(*) FROM outbox WHERE status = 'pending'") == 25 * 12
    assert summary.api_calls == len(api.requests) == run_forecast(summary, POLICY).total
    # 3 search pages, no events on a first run, 25 flows x (2 participant pages + 1) + 1 empty flow x 2
    assert run_forecast(summary, POLICY).total == 3 + 0 + 25 * 3 + 2


async def test_an_idle_second_run_only_lists_flows_and_events(store: Store) -> None:
    """Nothing due: the run costs discovery pages plus one events page, far fewer than the first."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    first = await poller.run_once()
    api.requests.clear()
    clock.advance(60)
    second = await poller.run_once()
    assert (second.outcome, second.changes, second.flows_refreshed) == ("ok", 0, 0)
    assert second.api_calls == len(api.requests) == run_forecast(second, POLICY).total == 3 + 1
    assert second.api_calls * 10 < first.api_calls


async def test_a_changed_grade_is_one_change_and_one_outbox_row(store: Store) -> None:
    """After the poll interval a changed grade is written once, with a new outbox row."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.run_once()
    api.flows[3].grades[3001] = {"grade": "A", "adminGrade": None, "date": 1_700_000_900}
    clock.advance(1000)
    summary = await poller.run_once()
    assert (summary.changes, summary.flows_refreshed) == (1, 25)
    assert await count(store, "SELECT grade FROM assessments WHERE participant_id = 3001") == "A"
    assert await count(store, "SELECT version FROM assessments WHERE participant_id = 3001") == 2
    assert await count(store, "SELECT count(*) FROM outbox WHERE participant_id = 3001") == 2


async def test_an_open_breaker_ends_the_run_and_the_next_resumes(store: Store) -> None:
    """CircuitOpen mid-refresh: the run is paused; the next one fetches only the flows not done."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    api.fail_when(lambda r: r == ("assessments", 12), CircuitOpen("http://x", 30.0, "maintenance"))
    first = await poller.run_once()
    assert (first.outcome, first.retry_after) == ("paused", 30.0)
    assert "CircuitOpen" in (first.reason or "")
    async with store.db.execute("SELECT flow_id FROM flow_plan WHERE last_polled_at IS NOT NULL") as cur:
        committed = {int(row[0]) for row in await cur.fetchall()}
    assert 0 < len(committed) < 26
    api.requests.clear()
    clock.advance(30)
    second = await poller.run_once()
    again = {arg for name, arg in api.requests if name == "assessments"}
    assert second.outcome == "ok"
    assert again.isdisjoint(committed)
    assert again | committed == set(range(1, 26)) | {30}
    assert await count(store, "SELECT count(*) FROM assessments") == 300
    assert await count(store, "SELECT outcome FROM sync_runs WHERE run_id = 1") == "paused"


async def test_an_interrupted_discovery_keeps_its_pass(store: Store) -> None:
    """A breaker during discovery leaves the pass checkpoint; the next run completes it."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    api.fail_when(lambda r: r[0] == "search_flows" and r[1][1] == 20, CircuitOpen("http://x", 5.0, "down"))
    first = await poller.run_once()
    assert first.outcome == "paused"
    async with SqliteUnitOfWork(store).read() as unit:
        started = (await unit.checkpoints.get("discovery"))["pass_started"]
    clock.advance(5)
    second = await poller.run_once()
    assert second.outcome == "ok"
    assert await count(store, "SELECT count(*) FROM flows") == 26
    assert await count(store, "SELECT min(seen_at) FROM flows") == started


async def test_a_concluded_flow_is_fetched_once_more_then_never(store: Store) -> None:
    """CONCLUDED earns one final grades fetch; later runs leave it alone."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.run_once()
    api.flows[5].state = "CONCLUDED"
    api.flows[5].grades[5001]["grade"] = "C"
    clock.advance(60)
    api.requests.clear()
    summary = await poller.run_once()
    assert (summary.flows_refreshed, summary.changes) == (1, 1)
    for _ in range(3):
        clock.advance(1000)
        api.requests.clear()
        await poller.run_once()
        assert ("assessments", 5) not in api.requests


async def test_archived_flows_are_mirrored_once_and_not_listed_again(store: Store) -> None:
    """A first pass lists archived flows and mirrors them; later passes do not ask for ARCHIVED."""
    api, clock = world(), ManualClock()
    api.add_flow(40, state="ARCHIVED", participants=2)
    poller = make_poller(api, store, clock)
    await poller.run_once()
    assert await count(store, "SELECT count(*) FROM assessments WHERE flow_id = 40") == 2
    api.requests.clear()
    clock.advance(1000)
    await poller.run_once()
    assert all("ARCHIVED" not in arg[0] for name, arg in api.requests if name == "search_flows")
    assert ("assessments", 40) not in api.requests


async def test_a_flow_archived_unseen_gets_its_state_read_and_a_final_fetch(store: Store) -> None:
    """An active flow that vanishes from the listing is read with GET /flow and fetched one last time."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.run_once()
    api.flows[7].state = "ARCHIVED"
    clock.advance(60)
    api.requests.clear()
    await poller.run_once()
    assert ("get_flow", 7) in api.requests
    assert ("assessments", 7) in api.requests
    async with SqliteUnitOfWork(store).read() as unit:
        flow, plan = await unit.flows.get(7) or (None, None)
    assert (flow and flow.state, plan and plan.final_fetch_done) == ("ARCHIVED", True)


async def test_paper_handed_in_refreshes_its_flow_in_the_next_run(store: Store) -> None:
    """A PAPER_HANDED_IN since the cursor makes its flow due before its interval."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.run_once()
    clock.advance(120)
    api.events.append(
        {"type": "PAPER_HANDED_IN", "flowId": 9, "userId": 1, "timestamp": int(clock.wall()) - 10}
    )
    api.requests.clear()
    summary = await poller.run_once()
    assert summary.flows_refreshed == 1
    assert ("assessments", 9) in api.requests


async def test_a_flow_that_fails_alone_is_skipped_not_the_run(store: Store) -> None:
    """A 404 on one flow's assessments is recorded on that flow; every other flow is refreshed."""
    api, clock = world(), ManualClock()
    api.fail_when(lambda r: r == ("assessments", 4), ApiError("gone", status=404))
    summary = await make_poller(api, store, clock).run_once()
    assert (summary.outcome, summary.flows_refreshed) == ("ok", 25)
    assert "ApiError" in str(await count(store, "SELECT last_error FROM flow_plan WHERE flow_id = 4"))


async def test_a_grades_refresh_feeds_the_outbox_at_once(store: Store) -> None:
    """The webhook path: refresh_grades writes a changed grade and its outbox row immediately."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.run_once()
    api.flows[2].grades[2002] = {"grade": "D", "adminGrade": "7", "date": 1_700_001_000}
    await poller.refresh.refresh_grades(2, with_participants=False)
    assert await count(store, "SELECT count(*) FROM outbox WHERE participant_id = 2002") == 2


async def test_refresh_flow_of_an_unknown_flow_mirrors_it(store: Store) -> None:
    """A webhook for a flow discovery has not seen yet creates it, due for a refresh."""
    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    await poller.refresh.refresh_grades(3, with_participants=False)
    assert await count(store, "SELECT state FROM flows WHERE flow_id = 3") == "PARTICIPATION_STARTED"
    assert await count(store, "SELECT count(*) FROM assessments WHERE flow_id = 3") == 12


async def test_runs_never_overlap(store: Store) -> None:
    """Two concurrent run_once calls run one after the other: the second finds nothing due."""
    import asyncio

    api, clock = world(), ManualClock()
    poller = make_poller(api, store, clock)
    one, two = await asyncio.gather(poller.run_once(), poller.run_once())
    assert sorted([one.flows_refreshed, two.flows_refreshed]) == [0, 26]


async def test_a_failed_final_fetch_is_tried_again(store: Store) -> None:
    """A concluded flow whose last grades fetch failed is fetched again after a poll interval."""
    api, clock = world(), ManualClock()
    api.flows[6].state = "CONCLUDED"
    api.fail_when(lambda r: r == ("assessments", 6), ApiError("bad gateway page", status=400))
    poller = make_poller(api, store, clock)
    await poller.run_once()
    assert await count(store, "SELECT count(*) FROM assessments WHERE flow_id = 6") == 0
    clock.advance(1000)
    await poller.run_once()
    assert await count(store, "SELECT count(*) FROM assessments WHERE flow_id = 6") == 12
    assert await count(store, "SELECT final_fetch_done FROM flow_plan WHERE flow_id = 6") == 1
