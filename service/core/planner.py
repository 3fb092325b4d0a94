"""Sync planning: which flows a run refreshes and when each is due next.

WISEflow has no modified-since filter, so the plan rests on flow states and dates:

    NOT_ACTIVATED, ACTIVATED            dormant: every `dormant_interval`, or at participation start if sooner
    PARTICIPATION_STARTED, _ENDED       active: every `poll_interval` +- `jitter` (also any flow in its
                                        marking window, whatever its state)
    CONCLUDED                           one more grades fetch after it concludes, then only the slow
                                        reconciliation (`reconcile_interval`, 0 = never): the safety net
                                        for a grade changed later whose webhook was lost
    ARCHIVED                            never again; a flow first seen archived is mirrored once
                                        (`mirror_archived_once`) or skipped

A state change seen by discovery makes a flow due at once, and a PAPER_HANDED_IN participation event
asks for an early refresh. Pure: time and randomness are parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from service.core.records import Flow

if TYPE_CHECKING:
    from service.settings import Settings

ACTIVE_STATES: Final = frozenset({"PARTICIPATION_STARTED", "PARTICIPATION_ENDED"})
DORMANT_STATES: Final = frozenset({"NOT_ACTIVATED", "ACTIVATED"})
TERMINAL_STATES: Final = frozenset({"CONCLUDED", "ARCHIVED"})
# Every state but ARCHIVED: what discovery lists on every run.
LIVE_STATES: Final = ("NOT_ACTIVATED", "ACTIVATED", "PARTICIPATION_STARTED", "PARTICIPATION_ENDED", "CONCLUDED")
# A time after every real one (stored as REAL; SQLite has no portable infinity).
NEVER: Final = 1e18
EARLY_REFRESH_EVENTS: Final = frozenset({"PAPER_HANDED_IN"})
# A due flow's place in a run (`due_key`): (not an early refresh, next_poll_at, flow id), ascending.
DueKey = tuple[bool, float, int]


class Random(Protocol):
    """The part of `random.Random` the planner uses."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """Intervals and page sizes of the plan."""

    poll_interval: float = 900.0
    jitter: float = 0.1
    # 6 h: a flow that has not started changes rarely; its participation start date pulls it in earlier.
    dormant_interval: float = 6 * 3600.0
    # 300 s: events are indexed by their own timestamp, which may trail the moment we ask by a little.
    events_overlap: float = 300.0
    mirror_archived_once: bool = True
    search_page: int = 100
    participants_page: int = 100
    events_page: int = 1000
    # Due flows a run reads from the mirror at a time: its memory is a page of flows, whatever their number.
    due_page: int = 100
    # Concluded flows after their final fetch: 0 leaves them for good (webhooks alone report later changes).
    reconcile_interval: float = 0.0

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.dormant_interval <= 0 or not 0 <= self.jitter < 1:
            raise ValueError("PlanPolicy needs positive intervals and 0 <= jitter < 1")
        if self.reconcile_interval < 0:
            raise ValueError("PlanPolicy.reconcile_interval must not be negative")
        if self.due_page < 1:
            raise ValueError("PlanPolicy.due_page must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanPolicy:
        """The plan of `SYNC_POLL_INTERVAL` and `SYNC_RECONCILE_INTERVAL`."""
        return cls(poll_interval=settings.poll_interval, reconcile_interval=settings.reconcile_interval)


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """A flow's polling state, as stored in `flow_plan`."""

    last_polled_at: float | None = None
    next_poll_at: float = 0.0
    final_fetch_done: bool = False
    early_refresh: bool = False


def is_due(plan: FlowPlan, now: float) -> bool:
    """True when a run should refresh the flow now."""
    return plan.early_refresh or plan.next_poll_at <= now


def is_active(flow: Flow, now: float) -> bool:
    """In participation, or inside its marking window: grades may change at any moment."""
    if flow.state in ACTIVE_STATES:
        return True
    if flow.state in TERMINAL_STATES or flow.marking_start is None or flow.marking_end is None:
        return False
    return flow.marking_start <= now <= flow.marking_end


def plan_after_discovery(
    previous: Flow | None, current: Flow, plan: FlowPlan | None, now: float, policy: PlanPolicy
) -> FlowPlan:
    """The plan once discovery has listed `current` (and the mirror held `previous`, if any)."""
    if plan is None or previous is None:
        if current.state == "ARCHIVED" and not policy.mirror_archived_once:
            return FlowPlan(next_poll_at=NEVER, final_fetch_done=True)
        return FlowPlan(next_poll_at=now)  # first sight: mirror it in this run
    if current.state != previous.state:
        if current.state == "ARCHIVED" and plan.final_fetch_done:
            return plan  # concluded and fetched already: archiving changes no grade
        # A new state (unarchived back to CONCLUDED included) earns a refresh now and a new final fetch.
        return replace(plan, next_poll_at=now, final_fetch_done=False)
    start = current.participation_start
    if current.state in DORMANT_STATES and start is not None and now < start < plan.next_poll_at:
        return replace(plan, next_poll_at=float(start))  # the period moved earlier
    return plan


def plan_after_poll(flow: Flow, now: float, rng: Random, policy: PlanPolicy) -> FlowPlan:
    """The plan once the flow's participants and grades have been refreshed at `now`."""
    if flow.state in TERMINAL_STATES:
        due = NEVER
        if flow.state == "CONCLUDED" and policy.reconcile_interval > 0:
            due = now + jittered(policy.reconcile_interval, policy.jitter, rng)
        return FlowPlan(last_polled_at=now, next_poll_at=due, final_fetch_done=True)
    if flow.state in DORMANT_STATES and not is_active(flow, now):
        due = now + jittered(policy.dormant_interval, policy.jitter, rng)
        start = flow.participation_start
        if start is not None and now < start < due:
            due = float(start)
        return FlowPlan(last_polled_at=now, next_poll_at=due)
    # Active, or a state this code does not know: poll as often as an active flow, to be safe.
    return FlowPlan(last_polled_at=now, next_poll_at=now + jittered(policy.poll_interval, policy.jitter, rng))


def plan_after_failure(plan: FlowPlan, now: float, rng: Random, policy: PlanPolicy) -> FlowPlan:
    """The plan once a flow's own refresh failed (a 404, a bad page): try again after a poll interval.

    Whatever the state, a final fetch that failed is still owed, so the flow is never parked for good here.
    """
    return replace(
        plan, next_poll_at=now + jittered(policy.poll_interval, policy.jitter, rng), early_refresh=False
    )


def request_early_refresh(flow: Flow, plan: FlowPlan) -> FlowPlan:
    """Mark the flow for a refresh in the next run (a PAPER_HANDED_IN); archived flows stay untouched."""
    if flow.state == "ARCHIVED" and plan.final_fetch_done:
        return plan
    return replace(plan, early_refresh=True)


def request_reconciliation(flow: Flow, plan: FlowPlan) -> FlowPlan:
    """A full reconciliation (`sync --full`): every flow not archived is refreshed by the next run."""
    if flow.state == "ARCHIVED":
        return plan
    return replace(plan, early_refresh=True)


def due_key(flow: Flow, plan: FlowPlan) -> DueKey:
    """Where a due flow comes in a run: early refreshes first, then the longest overdue, then by id."""
    return (not plan.early_refresh, plan.next_poll_at, flow.flow_id)


def due_in_order(flows: Iterable[tuple[Flow, FlowPlan]], now: float) -> list[tuple[Flow, FlowPlan]]:
    """The flows a run refreshes now (`is_due`), in `due_key` order.

    The definition: a run reads its due flows a page at a time from the store (`unit.flows.due`), which
    answers the same flows in the same order (tests/integration/test_store_contract.py holds it to this).
    """
    due = [(flow, plan) for flow, plan in flows if is_due(plan, now)]
    return sorted(due, key=lambda fp: due_key(*fp))


def replan(
    flows: Mapping[int, tuple[Flow, FlowPlan]], rule: Callable[[Flow, FlowPlan], FlowPlan]
) -> dict[int, FlowPlan]:
    """The plans `rule` changes among `flows` (flow id -> new plan); unchanged ones are left out."""
    changed = {flow_id: rule(flow, plan) for flow_id, (flow, plan) in flows.items()}
    return {flow_id: plan for flow_id, plan in changed.items() if plan != flows[flow_id][1]}


def jittered(interval: float, jitter: float, rng: Random) -> float:
    """`interval` spread uniformly over +-`jitter` of itself, so flows polled together drift apart."""
    return interval * (1.0 + jitter * (2.0 * rng.random() - 1.0))


def event_window(cursor: float | None, now: float, overlap: float) -> tuple[int, int] | None:
    """The `POST /participation-events` window [from, to] in unix seconds, or None on a first run.

    A first run refreshes every flow anyway, so it only starts the cursor. Later windows reach back
    `overlap` seconds before the cursor; an event seen twice only re-marks a flow.
    """
    if cursor is None:
        return None
    start = int(max(0.0, cursor - overlap))
    return start, max(start, int(now))


def flows_to_refresh(events: Iterable[Mapping[str, Any]]) -> set[int]:
    """The flow ids that participation events ask to refresh early."""
    return {
        int(e["flowId"])
        for e in events
        if e.get("type") in EARLY_REFRESH_EVENTS and e.get("flowId") is not None
    }
