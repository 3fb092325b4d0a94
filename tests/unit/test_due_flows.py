"""A run's due flows, read a page at a time (`DueFlows`) and a `--full` re-plan (`replan_all`), on the fake."""

from __future__ import annotations

from service.core import planner
from service.core.planner import NEVER, FlowPlan
from service.core.records import Flow
from service.sync.due import DueFlows, replan_all
from tests.fake_unit import FakeUnitOfWork

NOW = 1_000.0


async def store(uow: FakeUnitOfWork, plans: dict[int, FlowPlan]) -> None:
    """Flows 1.. in the ACTIVATED state (ARCHIVED for flows of 100 and above) with these plans."""
    async with uow.transaction() as unit:
        for flow_id in plans:
            await unit.flows.save(Flow(flow_id, "ARCHIVED" if flow_id >= 100 else "ACTIVATED"), NOW)
        await unit.flows.save_plans(plans)


async def test_every_due_flow_is_taken_once_in_order_though_none_was_polled() -> None:
    """Plans left as they were (refreshes in flight, or every race lost): each due flow still comes once, in
    `due_in_order`'s order, across pages of 3; then None, again and again."""
    uow = FakeUnitOfWork()
    plans = {i: FlowPlan(None, NOW - (i % 4) * 10, early_refresh=i % 5 == 0) for i in range(1, 12)}
    plans[12] = FlowPlan(None, NOW + 1)  # not due
    await store(uow, plans)
    due = DueFlows(uow, NOW, page=3)
    taken = []
    for _ in range(40):  # bounded: a cursor that went back would take flows forever
        stored = await due.take()
        if stored is None:
            break
        taken.append(stored[0].flow_id)
    expected = [
        f.flow_id for f, _ in planner.due_in_order([(Flow(i, "ACTIVATED"), p) for i, p in plans.items()], NOW)
    ]
    assert taken == expected
    assert (await due.count(), await due.take(), await due.take()) == (11, None, None)


async def test_a_full_replan_marks_every_flow_not_archived_page_by_page() -> None:
    """`replan_all` with the reconciliation rule over 7 flows, 2 a page: every one not archived is marked."""
    uow = FakeUnitOfWork()
    await store(uow, {**{i: FlowPlan(None, NEVER) for i in range(1, 6)}, 100: FlowPlan(None, NEVER)})
    async with uow.transaction() as unit:
        await replan_all(unit, planner.request_reconciliation, page=2)
    marked = {i: row.plan.early_refresh for i, row in uow.tables.flows.items() if row.plan is not None}
    assert marked == {1: True, 2: True, 3: True, 4: True, 5: True, 100: False}
