"""The plan's call formula: what a calm sync run should cost in WISEflow calls (benchmarks and tests).

The service counts the calls a run really sends (on the wire, by route); this formula is what those
counts are checked against: bench/sync_scale.py prints it beside the measured figure, and the sync tests
assert a run sends exactly this many. It lives here, not in the service, because nothing in production
decides anything from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from service.core.planner import PlanPolicy
from service.core.run_summary import RunSummary


def pages(count: int, limit: int) -> int:
    """Requests to list `count` items `limit` a page; an empty listing still costs one request."""
    return max(1, math.ceil(count / limit))


@dataclass(frozen=True, slots=True)
class CallForecast:
    """The API calls a calm run makes (no retries, no token requests), by phase."""

    discovery: int
    events: int
    flows: int

    @property
    def total(self) -> int:
        """All calls of the run."""
        return self.discovery + self.events + self.flows


def predict_run_calls(
    listed_flows: int,
    due_participants: Iterable[int],
    events: int | None,
    policy: PlanPolicy,
    get_flow_calls: int = 0,
) -> CallForecast:
    """The plan's formula for one run.

    calls = pages(F, 100)                              discovery: F flows listed by `POST /flows/search`
          + pages(E, 1000)  (0 on a first run)         participation events since the cursor
          + sum over due flows of pages(P_f, 100) + 1  participants, then the assessments array
          + get_flow_calls                             flows that vanished from the listing
    """
    flows = sum(pages(p, policy.participants_page) + 1 for p in due_participants)
    event_calls = 0 if events is None else pages(events, policy.events_page)
    return CallForecast(pages(listed_flows, policy.search_page), event_calls, flows + get_flow_calls)


def run_forecast(summary: RunSummary, policy: PlanPolicy) -> CallForecast:
    """The formula applied to what one run listed and refreshed (compare with its `api_calls`)."""
    sizes = summary.refreshed_participants.elements()
    return predict_run_calls(summary.flows_listed, sizes, summary.events, policy)
