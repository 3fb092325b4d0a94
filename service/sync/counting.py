"""Counts the WISEflow requests a run makes, by wrapping the API port the poller uses.

A paged iterator costs one request per page: the count goes up when the iterator starts a page (item 0,
`limit`, 2 * `limit` ...), and an empty listing still counts one. This is the calm-run count the
planner's formula predicts; retries are invisible here and show in the request journal instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from service.core.planner import PlanPolicy
from service.core.ports import Json, WiseflowApi


class CountingApi:
    """The five read endpoints of a sync run, counted (`calls`, `pages`)."""

    def __init__(self, api: WiseflowApi, policy: PlanPolicy) -> None:
        self.inner = api
        self._policy = policy
        self.calls = 0
        self.pages = 0

    def reset(self) -> None:
        """Start counting a new run."""
        self.calls = 0
        self.pages = 0

    async def search_flows(self, states: Sequence[str] | None = None) -> AsyncIterator[Json]:
        """`POST /flows/search`, every page."""
        async for item in self._paged(self.inner.search_flows(states), self._policy.search_page):
            yield item

    async def get_flow(self, flow_id: int) -> Json:
        """`GET /flow/{flowId}`."""
        self.calls += 1
        return await self.inner.get_flow(flow_id)

    async def iter_participants(self, flow_id: int) -> AsyncIterator[Json]:
        """`GET /flows/{flowId}/participants`, every page."""
        async for item in self._paged(self.inner.iter_participants(flow_id), self._policy.participants_page):
            yield item

    async def get_assessments(self, flow_id: int) -> list[Json]:
        """`GET /flow/{flowId}/assessments`."""
        self.calls += 1
        return await self.inner.get_assessments(flow_id)

    async def iter_participation_events(
        self, ts_from: int, ts_to: int, types: Sequence[str] | None = None
    ) -> AsyncIterator[Json]:
        """`POST /participation-events`, every page."""
        pages = self.inner.iter_participation_events(ts_from, ts_to, types)
        async for item in self._paged(pages, self._policy.events_page):
            yield item

    async def _paged(self, items: AsyncIterator[Json], limit: int) -> AsyncIterator[Json]:
        self.calls += 1  # the first page is requested whether or not it holds anything
        self.pages += 1
        count = 0
        async for item in items:
            if count and count % limit == 0:
                self.calls += 1
                self.pages += 1
            count += 1
            yield item
