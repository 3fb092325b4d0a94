"""Fakes of the ports (no mocks): an in-memory WISEflow and an in-memory SIS sink, for unit tests.

`FakeWiseflowApi` pages like the real client (one recorded request per page of `limit` items) and can be
told to fail: `fail_when(predicate, error)` raises `error` for the request the predicate matches.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.core.ports import Json
from service.core.request_tally import RequestTally
from service.errors import ApiError, CircuitOpen, SinkError

STATE_NUMBERS = {
    "NOT_ACTIVATED": 0,
    "ACTIVATED": 1,
    "PARTICIPATION_STARTED": 2,
    "PARTICIPATION_ENDED": 3,
    "CONCLUDED": 4,
    "ARCHIVED": 5,
}


@dataclass
class FakeFlow:
    """One flow of the fake world."""

    flow_id: int
    state: str = "PARTICIPATION_STARTED"
    participants: list[int] = field(default_factory=list)
    grades: dict[int, dict[str, Any]] = field(default_factory=dict)
    participation: tuple[int, int] = (1_700_000_000, 1_700_010_000)
    marking: tuple[int, int] = (1_700_010_000, 1_700_020_000)

    def search_item(self) -> Json:
        return {
            "flowId": self.flow_id,
            "title": f"Flow {self.flow_id}",
            "state": self.state,
            "createdAt": 1_600_000_000,
            "participation": {"start": self.participation[0], "end": self.participation[1]},
            "marking": {"start": self.marking[0], "end": self.marking[1]},
        }

    def basic(self) -> Json:
        return {
            "id": self.flow_id,
            "name": f"Flow {self.flow_id}",
            "state": STATE_NUMBERS[self.state],
            "creationDate": 1_600_000_000,
            "participantStartDate": self.participation[0],
            "participantEndDate": self.participation[1],
            "assessorStartDate": self.marking[0],
            "assessorEndDate": self.marking[1],
        }


Request = tuple[str, Any]
# The fake's endpoint names as the route templates the real client reports.
ROUTES = {
    "search_flows": "POST /flows/search",
    "get_flow": "GET /flow/{id}",
    "participants": "GET /flows/{id}/participants",
    "assessments": "GET /flow/{id}/assessments",
    "events": "POST /participation-events",
    "license_info": "GET /license/info",
}


class FakeWiseflowApi:
    """An in-memory WISEflow: `flows` by id, `events`, and `requests` as (endpoint, argument) per page."""

    def __init__(self, flows: Sequence[FakeFlow] = (), page: int = 100, events_page: int = 1000) -> None:
        self.flows = {f.flow_id: f for f in flows}
        self.events: list[Json] = []
        self.requests: list[Request] = []
        self._page = page
        self._events_page = events_page
        self._failures: list[tuple[Callable[[Request], bool], Exception, int]] = []
        self._tally: RequestTally | None = None  # a run's view counts its requests here, as the client does

    def counting(self, tally: RequestTally) -> FakeWiseflowApi:
        """This fake (the same world, requests and failures), its requests counted into `tally`."""
        view = copy.copy(self)
        view._tally = tally
        return view

    def add_flow(self, flow_id: int, state: str = "PARTICIPATION_STARTED", participants: int = 3) -> FakeFlow:
        """A flow with `participants` participants numbered flow_id*1000+1 ..., each with grade "B"."""
        ids = [flow_id * 1000 + i for i in range(1, participants + 1)]
        grades = {p: {"grade": "B", "adminGrade": None, "date": 1_700_000_500} for p in ids}
        self.flows[flow_id] = FakeFlow(flow_id, state, ids, grades)
        return self.flows[flow_id]

    def fail_when(self, predicate: Callable[[Request], bool], error: Exception, times: int = 1) -> None:
        """Raise `error` for the next `times` requests `predicate` matches."""
        self._failures.append((predicate, error, times))

    def count(self, endpoint: str) -> int:
        """How many requests went to `endpoint` (search_flows, get_flow, participants, assessments, events)."""
        return sum(1 for name, _ in self.requests if name == endpoint)

    def _request(self, endpoint: str, arg: Any) -> None:
        request = (endpoint, arg)
        for i, (predicate, error, times) in enumerate(self._failures):
            if times > 0 and predicate(request):
                self._failures[i] = (predicate, error, times - 1)
                if not isinstance(error, CircuitOpen):  # an open breaker sends nothing; the rest were sent
                    self._count(endpoint)
                raise error
        self._count(endpoint)
        self.requests.append(request)

    def _count(self, endpoint: str) -> None:
        """What the real client's transport counts, on the wire, into the tally of a run's view."""
        if self._tally is not None:
            self._tally.count(ROUTES[endpoint])

    async def _pages(self, endpoint: str, arg: Any, items: list[Json], limit: int) -> AsyncIterator[Json]:
        for start in range(0, max(len(items), 1), limit):
            self._request(endpoint, (arg, start))
            for item in items[start : start + limit]:
                yield item

    def search_flows(self, states: Sequence[str] | None = None) -> AsyncIterator[Json]:
        wanted = set(states or STATE_NUMBERS)
        items = [
            f.search_item() for f in sorted(self.flows.values(), key=lambda f: f.flow_id) if f.state in wanted
        ]
        return self._pages("search_flows", tuple(sorted(wanted)), items, self._page)

    async def get_flow(self, flow_id: int) -> Json:
        self._request("get_flow", flow_id)
        if flow_id not in self.flows:
            raise ApiError("not found", method="GET", path=f"/flow/{flow_id}", status=404)
        return self.flows[flow_id].basic()

    def _flow(self, flow_id: int, path: str) -> FakeFlow:
        """The flow, or WISEflow's 404 for a flow that is gone."""
        if flow_id not in self.flows:
            raise ApiError("not found", method="GET", path=path, status=404)
        return self.flows[flow_id]

    def iter_participants(self, flow_id: int) -> AsyncIterator[Json]:
        flow = self._flow(flow_id, f"/flows/{flow_id}/participants")
        items = [
            {"participantId": p, "user": {"id": p + 5, "firstName": "X"}, "number": p % 1000}
            for p in flow.participants
        ]
        return self._pages("participants", flow_id, items, self._page)

    async def get_assessments(self, flow_id: int) -> list[Json]:
        self._request("assessments", flow_id)
        flow = self._flow(flow_id, f"/flow/{flow_id}/assessments")
        return [{"id": p, "participantId": p, **g} for p, g in sorted(flow.grades.items())]

    def iter_participation_events(
        self, ts_from: int, ts_to: int, types: Sequence[str] | None = None
    ) -> AsyncIterator[Json]:
        items = [
            e
            for e in self.events
            if ts_from <= e["timestamp"] <= ts_to and (types is None or e["type"] in types)
        ]
        return self._pages("events", (ts_from, ts_to), items, self._events_page)

    async def list_webhooks(self) -> list[Json]:
        return []

    async def create_webhook(self, body: Json) -> Json:
        return body

    async def update_webhook(self, webhook_id: int, body: Json) -> Json:
        return body

    async def delete_webhook(self, webhook_id: int) -> None:
        return None

    async def test_webhook(self, webhook_id: int) -> None:
        return None

    async def license_info(self) -> Json:
        self._request("license_info", None)
        return {"name": "fake"}


class FakeSink:
    """An in-memory SIS: `deliveries` in order; `fail_next(n, status)` refuses the next n deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[Json, str]] = []
        self.attempts = 0  # every delivery asked of it, refused or not
        self._failures: list[tuple[int | None, float | None]] = []

    def fail_next(self, times: int, status: int | None = 503, retry_after: float | None = None) -> None:
        """Refuse the next `times` deliveries with `status` (None: no answer at all) and `retry_after`."""
        self._failures.extend([(status, retry_after)] * times)

    def heal(self) -> None:
        """Refuse nothing any more."""
        self._failures.clear()

    @property
    def keys(self) -> list[str]:
        """The idempotency keys received, in order."""
        return [key for _, key in self.deliveries]

    async def deliver(self, record: Json, idempotency_key: str) -> None:
        self.attempts += 1
        if self._failures:
            status, retry_after = self._failures.pop(0)
            raise SinkError("sink refused", status=status, retry_after=retry_after, body_size=len(str(record)))
        self.deliveries.append((dict(record), idempotency_key))
