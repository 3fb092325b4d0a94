"""What a sync run reports: its summary (also stored in `sync_runs`) and its progress events."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core import planner
from service.core.planner import PlanPolicy


@dataclass(slots=True)
class RunSummary:
    """What one run did; `outcome` is ok, interrupted (resumable) or failed."""

    run_id: int
    outcome: str
    reason: str | None = None
    retry_after: float | None = None
    api_calls: int = 0
    pages: int = 0
    records: int = 0  # items read from WISEflow: flows listed, participants, grades
    changes: int = 0
    flows_listed: int = 0
    flows_refreshed: int = 0
    events: int | None = None
    duration: float = 0.0
    refreshed_participants: list[int] = field(default_factory=list)

    def forecast(self, policy: PlanPolicy) -> planner.CallForecast:
        """The plan's formula applied to what this run listed and refreshed (compare with `api_calls`)."""
        return planner.predict_run_calls(self.flows_listed, self.refreshed_participants, self.events, policy)


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: `phase` and, when known, how many of `total` items are done."""

    phase: str
    done: int
    total: int | None
