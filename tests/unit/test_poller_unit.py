"""The poller and the flow refresh over the in-memory unit of work, the WISEflow fake and a manual clock."""

from __future__ import annotations

import random
from dataclasses import replace

from service.core.clock import ManualClock
from service.core.planner import FlowPlan, PlanPolicy, due_in_order
from service.core.run_summary import Progress
from service.errors import CircuitOpen
from service.sync.poller import Poller
from tests.fake_unit import FakeUnitOfWork
from tests.fakes import FakeWiseflowApi

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, search_page=10, participants_page=10)


def rig(flows: int = 3, participants: int = 4) -> tuple[FakeWiseflowApi, FakeUnitOfWork, ManualClock, Poller]:
    """A world of `flows` flows, an empty store, and a poller over both."""
    api, uow, clock = FakeWiseflowApi(page=10), FakeUnitOfWork(), ManualClock()
    for flow_id in range(1, flows + 1):
        api.add_flow(flow_id, participants=participants)
    return api, uow, clock, Poller(api, uow, clock, random.Random(1), POLICY)


async def test_a_first_run_mirrors_every_flow_and_queues_every_grade() -> None:
    """Flows, participants, grades and one outbox row per grade; the run is recorded with its requests."""
    api, uow, _, poller = rig()
    summary = await poller.run_once()
    tables = uow.tables
    assert (summary.outcome, summary.changes, summary.flows_refreshed) == ("ok", 12, 3)
    assert (len(tables.flows), len(tables.participants), len(tables.grades), len(tables.outbox)) == (
        3,
        12,
        12,
        12,
    )
    assert tables.runs[summary.run_id]["outcome"] == "ok"
    assert sum(tables.run_requests[summary.run_id].values()) == summary.api_calls == len(api.requests)


async def test_a_grades_refresh_returns_the_rows_it_queued() -> None:
    """A changed grade queues one row, the same grade again none; a sent grade changed to ungraded queues
    its withdrawal (before the withdrawal existed, nothing: the SIS kept the old grade), once."""
    api, uow, _, poller = rig()
    await poller.run_once()
    api.flows[2].grades[2001] = {"grade": "A", "adminGrade": None, "date": 1_700_000_900}
    assert await poller.refresh.refresh_grades(2, with_participants=False) == 1
    assert await poller.refresh.refresh_grades(2, with_participants=False) == 0
    api.flows[2].grades[2002] = {"grade": None, "adminGrade": None, "date": None}
    assert await poller.refresh.refresh_grades(2, with_participants=True) == 1
    assert await poller.refresh.refresh_grades(2, with_participants=True) == 0
    assert len(uow.tables.outbox) == 14


async def test_a_refresh_of_an_unknown_flow_mirrors_it_first() -> None:
    """A webhook for a flow the mirror has not seen: its state, then its grades, queued."""
    api, uow, _, poller = rig(flows=0)
    api.add_flow(7, participants=2)
    assert await poller.refresh.refresh_grades(7, with_participants=False) == 2
    assert (7 in uow.tables.flows, api.count("get_flow"), api.count("assessments")) == (True, 1, 1)


async def test_a_flow_wiseflow_no_longer_has_leaves_the_mirror() -> None:
    """A 404 for the flow: it is dropped with its grades, its queued rows stay for the SIS."""
    api, uow, _, poller = rig()
    await poller.run_once()
    del api.flows[1]
    assert await poller.refresh.refresh_grades(1, with_participants=False) == 0
    assert 1 not in uow.tables.flows
    assert not any(flow_id == 1 for flow_id, _ in uow.tables.grades)
    assert len(uow.tables.outbox) == 12


async def test_a_run_the_breaker_ends_keeps_its_discovery_pass_for_the_next() -> None:
    """Interrupted on the second search page: the pass start stays, and the next run completes the pass."""
    api, uow, clock, poller = rig(flows=15)
    api.fail_when(lambda r: r[0] == "search_flows" and r[1][1] == 10, CircuitOpen("http://x", 5.0, "down"))
    first = await poller.run_once()
    assert first.outcome == "paused"
    assert first.retry_after == 5.0
    started = uow.tables.checkpoints.get("discovery")
    assert started is not None
    clock.advance(5)
    second = await poller.run_once()
    assert second.outcome == "ok"
    assert "discovery" not in uow.tables.checkpoints
    assert len(uow.tables.flows) == 15
    assert uow.rollbacks == 0  # the breaker stops the run between transactions, never inside one


async def test_a_run_refreshes_the_due_flows_in_the_planners_order_across_pages() -> None:
    """60 flows, read 7 at a time: the run refreshes exactly `due_in_order`'s flows, in its order
    (early refreshes first, then the longest overdue), every one once, and counts them for its progress."""
    api, uow, clock, _ = rig(flows=60, participants=1)
    progress: list[Progress] = []
    policy = replace(POLICY, due_page=7)
    poller = Poller(api, uow, clock, random.Random(1), policy, concurrency=1, on_progress=progress.append)
    await poller.run_once()
    clock.advance(10)
    now = clock.wall()
    shuffle = random.Random(5)
    for row in uow.tables.flows.values():  # overdue by up to 100 s, not due yet, or marked for an early refresh
        row.plan = FlowPlan(
            now - 900, now + shuffle.choice([-100, -50, -50, 0, 20]), False, shuffle.random() < 0.1
        )
    stored = [(row.flow, row.plan) for row in uow.tables.flows.values() if row.plan is not None]
    expected = [flow.flow_id for flow, _ in due_in_order(stored, now)]
    api.requests.clear()
    progress.clear()
    summary = await poller.run_once()
    assert [arg for name, arg in api.requests if name == "assessments"] == expected
    assert summary.flows_refreshed == len(expected) > 3 * policy.due_page
    assert progress[-1] == Progress("flows", len(expected), len(expected))
