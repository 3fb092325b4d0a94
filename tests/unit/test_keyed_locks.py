"""A flow's refresh lock: one refresh of a flow at a time, and no lock kept once nobody uses it."""

from __future__ import annotations

import asyncio
import random

from service.core.clock import ManualClock
from service.core.planner import PlanPolicy
from service.sync.keyed_locks import KeyedLocks
from service.sync.poller import Poller
from service.sync.refresh import FlowRefresh
from tests.fake_unit import FakeUnitOfWork
from tests.fakes import FakeWiseflowApi, Json
from tests.waiting import wait_until


class GatedApi(FakeWiseflowApi):
    """The fake WISEflow whose assessments answer only once `gate` opens; counts the fetches under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.inside = 0
        self.most_inside = 0

    async def get_assessments(self, flow_id: int) -> list[Json]:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.gate.wait()
            return await super().get_assessments(flow_id)
        finally:
            self.inside -= 1


async def test_two_refreshes_of_a_flow_take_turns_and_leave_no_lock_behind() -> None:
    """The second refresh of flow 1 waits for the first's fetch and write; flow 2's goes on beside them;
    once all are done the lock table is empty."""
    api, uow = GatedApi(), FakeUnitOfWork()
    api.add_flow(1, participants=2)
    api.add_flow(2, participants=2)
    refresh = FlowRefresh(api, uow, ManualClock(), random.Random(1), PlanPolicy())
    for flow_id in (1, 2):
        await refresh.refresh_flow(flow_id)  # mirrored, so a grades refresh can commit
    api.gate.clear()
    first = asyncio.create_task(refresh.refresh_grades(1, with_participants=False))
    await wait_until(lambda: api.inside == 1, what="the first refresh fetching")
    second = asyncio.create_task(refresh.refresh_grades(1, with_participants=False))
    await wait_until(lambda: refresh.flow_locks.users(1) == 2, what="the second refresh waiting for flow 1")
    other = asyncio.create_task(refresh.refresh_grades(2, with_participants=False))
    await wait_until(lambda: api.inside == 2, what="flow 2's refresh fetching beside flow 1's")
    assert len(refresh.flow_locks) == 2
    api.gate.set()
    assert await asyncio.gather(first, second, other) == [2, 0, 2]  # the second found nothing new
    assert (api.most_inside, api.count("assessments")) == (2, 3)  # never two of flow 1 at once
    assert len(refresh.flow_locks) == 0


async def test_a_waiter_cancelled_leaves_no_entry() -> None:
    """A refresh cancelled while it waits for the flow's lock is no longer counted; the entry goes with the
    holder."""
    locks = KeyedLocks()
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with locks.hold(7):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold(7):
            raise AssertionError("never reached: cancelled while waiting")

    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(waiter())
    await wait_until(lambda: locks.users(7) == 2, what="the waiter queued")
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert locks.users(7) == 1
    release.set()
    await holding
    assert (len(locks), locks.users(7)) == (0, 0)


async def test_a_run_keeps_no_lock_for_the_flows_it_refreshed() -> None:
    """After a run over 30 flows, the refresh's lock table is empty (it used to keep one lock per flow)."""
    api, uow = FakeWiseflowApi(page=10), FakeUnitOfWork()
    for flow_id in range(1, 31):
        api.add_flow(flow_id, participants=1)
    poller = Poller(api, uow, ManualClock(), random.Random(1), PlanPolicy(), concurrency=4)
    summary = await poller.run_once()
    assert (summary.outcome, summary.flows_refreshed) == ("ok", 30)
    assert len(poller.refresh.flow_locks) == 0
