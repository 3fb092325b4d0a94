"""The sync plan: due times per flow state, jitter, early refreshes, and event windows."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.clock import ManualClock
from service.core.planner import (
    NEVER,
    FlowPlan,
    PlanPolicy,
    due_in_order,
    event_window,
    flows_to_refresh,
    is_active,
    is_due,
    jittered,
    plan_after_discovery,
    plan_after_failure,
    plan_after_poll,
    replan,
    request_early_refresh,
    request_reconciliation,
)
from service.core.records import Flow
from service.settings import load_settings

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, dormant_interval=21600.0)


def flow(state: str, **dates: int) -> Flow:
    return Flow(1, state, **dates)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["PARTICIPATION_STARTED", "PARTICIPATION_ENDED"])
def test_active_flows_are_due_again_within_the_jittered_interval(state: str) -> None:
    """An active flow polled now is due after 900 s +- 10 %, and not before."""
    clock = ManualClock()
    plan = plan_after_poll(flow(state), clock.wall(), random.Random(1), POLICY)
    assert 810.0 <= plan.next_poll_at - clock.wall() <= 990.0
    clock.advance(809.0)
    assert not is_due(plan, clock.wall())
    clock.advance(182.0)
    assert is_due(plan, clock.wall())


def test_a_flow_in_its_marking_window_is_active_whatever_its_state() -> None:
    """Marking makes grades move: the marking window counts as active."""
    now = 1000
    assert is_active(flow("ACTIVATED", marking_start=900, marking_end=1100), now)
    assert not is_active(flow("ACTIVATED", marking_start=1001, marking_end=1100), now)
    assert not is_active(flow("CONCLUDED", marking_start=900, marking_end=1100), now)


def test_dormant_flows_are_polled_rarely() -> None:
    """NOT_ACTIVATED / ACTIVATED flows come back after the dormant interval (+- jitter)."""
    plan = plan_after_poll(flow("NOT_ACTIVATED"), 0.0, random.Random(2), POLICY)
    assert 0.9 * 21600 <= plan.next_poll_at <= 1.1 * 21600


def test_a_dormant_flow_is_due_at_its_participation_start_if_sooner() -> None:
    """A flow starting in an hour is polled when it starts, not six hours later."""
    plan = plan_after_poll(flow("ACTIVATED", participation_start=3600), 0.0, random.Random(3), POLICY)
    assert plan.next_poll_at == 3600.0


def test_a_concluded_flow_gets_one_final_fetch_then_never() -> None:
    """A flow seen concluding is due now; after that poll it is never due again."""
    previous = flow("PARTICIPATION_ENDED")
    polled = plan_after_poll(previous, 0.0, random.Random(4), POLICY)
    concluded = plan_after_discovery(previous, flow("CONCLUDED"), polled, 10.0, POLICY)
    assert is_due(concluded, 10.0)
    final = plan_after_poll(flow("CONCLUDED"), 10.0, random.Random(4), POLICY)
    assert (final.final_fetch_done, is_due(final, 10.0**9)) == (True, False)
    again = plan_after_discovery(flow("CONCLUDED"), flow("CONCLUDED"), final, 10.0**6, POLICY)
    assert not is_due(again, 10.0**6)


def test_a_concluded_flow_is_reconciled_slowly_when_asked() -> None:
    """With a reconcile interval, a concluded flow comes back once a day (+-jitter); archived flows never."""
    daily = PlanPolicy(reconcile_interval=86400.0)
    final = plan_after_poll(flow("CONCLUDED"), 10.0, random.Random(5), daily)
    assert final.final_fetch_done
    assert 10.0 + 0.9 * 86400 <= final.next_poll_at <= 10.0 + 1.1 * 86400
    assert not is_due(plan_after_poll(flow("ARCHIVED"), 10.0, random.Random(5), daily), 10.0**9)


def test_the_reconcile_interval_comes_from_the_settings() -> None:
    """SYNC_RECONCILE_INTERVAL feeds the plan; 0 restores "final fetch, then never"."""
    assert PlanPolicy.from_settings(load_settings({})).reconcile_interval == 86400.0
    never = PlanPolicy.from_settings(load_settings({"SYNC_RECONCILE_INTERVAL": "0"}))
    assert not is_due(plan_after_poll(flow("CONCLUDED"), 1.0, random.Random(6), never), 10.0**9)


def test_archiving_a_fetched_concluded_flow_costs_nothing() -> None:
    """CONCLUDED (final fetch done) -> ARCHIVED is not a reason to fetch again."""
    final = FlowPlan(last_polled_at=1.0, next_poll_at=NEVER, final_fetch_done=True)
    assert plan_after_discovery(flow("CONCLUDED"), flow("ARCHIVED"), final, 5.0, POLICY) == final


def test_an_active_flow_archived_before_its_final_fetch_gets_one() -> None:
    """Missing the CONCLUDED state does not lose the last grades: one fetch, then never."""
    plan = FlowPlan(last_polled_at=1.0, next_poll_at=900.0)
    archived = plan_after_discovery(flow("PARTICIPATION_ENDED"), flow("ARCHIVED"), plan, 5.0, POLICY)
    assert is_due(archived, 5.0)
    assert not is_due(plan_after_poll(flow("ARCHIVED"), 5.0, random.Random(0), POLICY), 10.0**9)


def test_archived_flows_first_seen_are_mirrored_once_or_skipped_by_policy() -> None:
    """First sight of an archived flow: due once by default, never with mirror_archived_once=False."""
    assert is_due(plan_after_discovery(None, flow("ARCHIVED"), None, 5.0, POLICY), 5.0)
    skip = PlanPolicy(mirror_archived_once=False)
    assert not is_due(plan_after_discovery(None, flow("ARCHIVED"), None, 5.0, skip), 10.0**9)


def test_a_new_flow_is_due_at_once() -> None:
    """Every flow is mirrored in the run that first lists it."""
    assert is_due(plan_after_discovery(None, flow("NOT_ACTIVATED"), None, 5.0, POLICY), 5.0)


def test_a_state_change_makes_a_flow_due_at_once() -> None:
    """ACTIVATED -> PARTICIPATION_STARTED does not wait out the dormant interval."""
    plan = FlowPlan(last_polled_at=0.0, next_poll_at=21600.0)
    changed = plan_after_discovery(flow("ACTIVATED"), flow("PARTICIPATION_STARTED"), plan, 60.0, POLICY)
    assert is_due(changed, 60.0)


def test_an_unchanged_flow_keeps_its_plan() -> None:
    """Discovery alone does not make a flow due."""
    plan = FlowPlan(last_polled_at=0.0, next_poll_at=900.0)
    same = flow("PARTICIPATION_STARTED")
    assert plan_after_discovery(same, same, plan, 60.0, POLICY) == plan


def test_a_participation_start_moved_earlier_pulls_a_dormant_flow_in() -> None:
    """A FLOW_PERIOD change seen by discovery moves the next poll to the new start."""
    plan = FlowPlan(last_polled_at=0.0, next_poll_at=21600.0)
    moved = plan_after_discovery(
        flow("ACTIVATED"), flow("ACTIVATED", participation_start=600), plan, 60.0, POLICY
    )
    assert moved.next_poll_at == 600.0


def test_paper_handed_in_requests_an_early_refresh() -> None:
    """A PAPER_HANDED_IN event marks its flow due before its interval; archived flows are left alone."""
    plan = FlowPlan(last_polled_at=0.0, next_poll_at=900.0)
    events = [{"type": "PAPER_HANDED_IN", "flowId": 1}, {"type": "HEARTBEAT", "flowId": 2}]
    assert flows_to_refresh(events) == {1}
    assert is_due(request_early_refresh(flow("PARTICIPATION_STARTED"), plan), 1.0)
    final = FlowPlan(last_polled_at=0.0, next_poll_at=NEVER, final_fetch_done=True)
    assert not is_due(request_early_refresh(flow("ARCHIVED"), final), 1.0)


def test_event_window_starts_the_cursor_then_overlaps() -> None:
    """No cursor: no window. With one: from cursor - overlap to now."""
    assert event_window(None, 1000.0, 300.0) is None
    assert event_window(5000.0, 6000.0, 300.0) == (4700, 6000)


@given(st.floats(min_value=1, max_value=1e6), st.floats(min_value=0, max_value=0.99), st.integers())
def test_jitter_stays_within_its_bounds(interval: float, jitter: float, seed: int) -> None:
    """A jittered interval is never outside interval * (1 +- jitter)."""
    value = jittered(interval, jitter, random.Random(seed))
    assert interval * (1 - jitter) - 1e-9 <= value <= interval * (1 + jitter) + 1e-9


def test_jitter_spreads_flows_polled_together() -> None:
    """Flows refreshed in the same run do not all come due in the same second."""
    rng = random.Random(5)
    due = {
        round(plan_after_poll(flow("PARTICIPATION_STARTED"), 0.0, rng, POLICY).next_poll_at) for _ in range(50)
    }
    assert len(due) > 40


def test_policy_rejects_nonsense() -> None:
    """A negative interval or a jitter of 100 % is refused."""
    with pytest.raises(ValueError, match="jitter"):
        PlanPolicy(jitter=1.0)


def test_a_failed_final_fetch_is_retried_not_parked() -> None:
    """A concluded flow whose last fetch failed comes back after a poll interval, its final fetch still owed."""
    plan = FlowPlan(last_polled_at=1.0, next_poll_at=5.0)
    retry = plan_after_failure(plan, 10.0, random.Random(6), POLICY)
    assert (retry.final_fetch_done, retry.last_polled_at) == (False, 1.0)
    assert 10.0 + 810.0 <= retry.next_poll_at <= 10.0 + 990.0


def test_due_flows_come_in_order_early_refreshes_first() -> None:
    """A run refreshes what `is_due` says, early refreshes first, then the longest overdue, then by id."""
    rows = [
        (Flow(1, "ACTIVATED"), FlowPlan(next_poll_at=50.0)),
        (Flow(2, "ACTIVATED"), FlowPlan(next_poll_at=200.0)),  # not due at 100
        (Flow(3, "ACTIVATED"), FlowPlan(next_poll_at=10.0)),
        (Flow(4, "ACTIVATED"), FlowPlan(next_poll_at=NEVER, early_refresh=True)),
        (Flow(5, "ACTIVATED"), FlowPlan(next_poll_at=10.0)),
    ]
    assert [f.flow_id for f, _ in due_in_order(rows, 100.0)] == [4, 3, 5, 1]


def test_early_refresh_and_reconciliation_leave_archived_flows_alone() -> None:
    """A hand-in marks any flow but an archived one already fetched; a reconciliation any flow not archived."""
    flows = {
        1: (Flow(1, "PARTICIPATION_STARTED"), FlowPlan(next_poll_at=NEVER)),
        2: (Flow(2, "ARCHIVED"), FlowPlan(next_poll_at=NEVER, final_fetch_done=True)),
        3: (Flow(3, "ARCHIVED"), FlowPlan(next_poll_at=NEVER)),
        4: (Flow(4, "CONCLUDED"), FlowPlan(next_poll_at=NEVER, early_refresh=True)),
    }
    assert sorted(replan(flows, request_early_refresh)) == [1, 3]  # 4 is marked already: no write
    assert sorted(replan(flows, request_reconciliation)) == [1]
    assert all(plan.early_refresh for plan in replan(flows, request_early_refresh).values())
