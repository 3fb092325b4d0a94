"""A run's walk over the mirror's flows, a page at a time: its memory stays flat as the mirror grows.

    DueFlows(uow, now, page)       the flows due at `now`, in the planner's order, for the run's workers
    replan_all(unit, rule, page)   every stored flow re-planned by `rule` (`sync --full` marks them all)

Both read keyset pages (`unit.flows.due`, `unit.flows.page`) of `PlanPolicy.due_page` flows, so a run
holds one page of flows and plans at a time, whatever the number of flows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from service.core import planner
from service.core.planner import DueKey, FlowPlan
from service.core.records import Flow
from service.core.store_ports import StoredFlow, Unit, UnitOfWork


class DueFlows:
    """The flows due at `now` (`planner.is_due`), in `planner.due_key` order, read a page at a time.

    The key of the last flow read is the cursor, so a flow the run has taken is behind it whatever its
    refresh did to its plan (polled, failed, or unchanged after losing every race): no flow is taken twice.
    A flow not yet reached whose plan something else changed meanwhile (a webhook's state refresh) comes
    as its plan now says: in its new place if still due at `now`, else at its next turn.
    """

    def __init__(self, uow: UnitOfWork, now: float, page: int) -> None:
        self._uow = uow
        self._now = now
        self._page = page
        self._ready: deque[StoredFlow] = deque()
        self._after: DueKey | None = None
        self._read_all = False
        self._lock = asyncio.Lock()  # one page read at a time; the workers that wait for it share it

    async def count(self) -> int:
        """How many flows are due now (the run's progress total)."""
        async with self._uow.read() as unit:
            return await unit.flows.count_due(self._now)

    async def take(self) -> StoredFlow | None:
        """The next due flow and its plan, or None once every due flow has been taken."""
        async with self._lock:
            if not self._ready and not self._read_all:
                async with self._uow.read() as unit:
                    page = await unit.flows.due(self._now, self._after, self._page)
                self._ready.extend(page)
                self._read_all = len(page) < self._page
                if page:
                    self._after = planner.due_key(*page[-1])
            return self._ready.popleft() if self._ready else None


async def replan_all(unit: Unit, rule: Callable[[Flow, FlowPlan], FlowPlan], page: int) -> None:
    """Every stored flow's plan through `rule`, written where it changes, a page of flows at a time."""
    after = 0
    while stored := await unit.flows.page(after, page):
        await unit.flows.save_plans(planner.replan({flow.flow_id: (flow, plan) for flow, plan in stored}, rule))
        after = stored[-1][0].flow_id
