"""The rate gate on a ManualClock: no sliding window over-admits, pauses stop everyone, full speed is kept.

The token bucket in front of it (aiolimiter) is tested with the gate on the loop's clock in test_limiter_loop.
"""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.clock import ManualClock
from service.core.ratebudget import RateBudget, RateGate
from service.core.retry_after import Quota


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of times inside any half-open window [t, t + period)."""
    ordered = sorted(times)
    # The fullest window can always be slid to start at one of the times.
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


def run_saturated(gate: RateGate, clock: ManualClock, seconds: float) -> list[float]:
    """Callers always waiting: each asks, sleeps exactly the returned wait, asks again."""
    admitted: list[float] = []
    while clock.monotonic() < seconds:
        wait = gate.try_acquire()
        if wait == 0.0:
            admitted.append(clock.monotonic())
        else:
            clock.advance(wait)
    return admitted


budgets = st.builds(
    RateBudget,
    per_second=st.integers(min_value=1, max_value=20),
    per_minute=st.integers(min_value=1, max_value=300),
    guard=st.sampled_from([0.0, 0.001, 0.01, 0.05]),
    burst=st.integers(min_value=1, max_value=8),
    reserve=st.integers(min_value=0, max_value=3),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=3)),
        st.tuples(st.just("tiny"), st.floats(min_value=0, max_value=0.01)),
        st.tuples(st.just("acquire"), st.integers(min_value=1, max_value=30)),
        st.tuples(st.just("pause"), st.floats(min_value=0, max_value=5)),
        st.tuples(st.just("quota"), st.integers(min_value=0, max_value=10)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, steps=ops)
def test_no_sliding_window_ever_over_admits(budget: RateBudget, steps: list[tuple[str, float]]) -> None:
    """Whatever callers, pauses and quotas do: <= per_second in any 1 s, <= per_minute in any 60 s."""
    clock = ManualClock()
    gate = RateGate(budget, clock)
    admitted: list[float] = []
    paused_until = float("-inf")
    during_pause: list[float] = []
    for op, arg in steps:
        if op in ("advance", "tiny"):
            clock.advance(arg)
        elif op == "pause":
            paused_until = max(paused_until, clock.monotonic() + arg)
            gate.pause(arg)
        elif op == "quota":
            gate.observe([Quota("minute", int(arg), 2.5)])
        elif op == "settle":
            gate.settle()
        else:
            for _ in range(int(arg)):  # a burst of callers arriving at the same instant
                if gate.try_acquire() == 0.0:
                    admitted.append(clock.monotonic())
                    if clock.monotonic() < paused_until:
                        during_pause.append(clock.monotonic())
    assert most_in_any_window(admitted, 1.0) <= budget.per_second
    assert most_in_any_window(admitted, 60.0) <= budget.per_minute
    assert during_pause == []


@settings(max_examples=100, deadline=None)
@given(budget=budgets, seconds=st.floats(min_value=1, max_value=130))
def test_saturated_callers_stay_under_budget(budget: RateBudget, seconds: float) -> None:
    """Callers that sleep exactly as told never over-admit either."""
    clock = ManualClock()
    admitted = run_saturated(RateGate(budget, clock), clock, seconds)
    assert most_in_any_window(admitted, 1.0) <= budget.per_second
    assert most_in_any_window(admitted, 60.0) <= budget.per_minute


@pytest.mark.parametrize("per_second", [5, 20, 100, 200])
def test_full_speed_is_at_least_95_percent_of_the_budget(per_second: int) -> None:
    """When the per-second budget binds, 20 s of demand get >= 95% of it: the bound costs little speed."""
    clock = ManualClock()
    budget = RateBudget(per_second=per_second, per_minute=per_second * 60)
    admitted = run_saturated(RateGate(budget, clock), clock, 20.0)
    assert len(admitted) >= 0.95 * 20 * per_second


def test_minute_budget_binds_when_it_is_the_tighter() -> None:
    """20/s but 600/min: two minutes of demand admit at most 1200 and at least 95% of that."""
    clock = ManualClock()
    admitted = run_saturated(RateGate(RateBudget(per_second=20, per_minute=600), clock), clock, 120.0)
    assert 0.95 * 1200 <= len(admitted) <= 1200


def test_pause_stops_everyone_until_it_ends() -> None:
    """A 429's Retry-After pauses every caller; pauses only extend."""
    clock = ManualClock()
    gate = RateGate(RateBudget(per_second=10, per_minute=600), clock)
    gate.pause(2.0)
    gate.pause(1.0)
    assert (gate.try_acquire(), gate.pause_remaining()) == (2.0, 2.0)
    clock.advance(2.0)
    assert gate.try_acquire() == 0.0


def test_a_lifted_pause_admits_at_once_and_the_first_request_still_goes_alone() -> None:
    """`lift` (an operator cleared the pause) ends an hour's pause now; the others wait for the first answer."""
    clock = ManualClock()
    gate = RateGate(RateBudget(per_second=100, per_minute=6000, burst=10, settle_timeout=5.0), clock)
    gate.pause(3600.0)
    gate.lift()
    first, held = gate.try_acquire(), gate.try_acquire()
    assert (gate.pause_remaining(), first, held) == (0.0, 0.0, 5.0)


def test_after_a_pause_one_request_goes_first_and_the_rest_wait_for_its_answer() -> None:
    """When a pause ends one caller is admitted; the next waits until `settle` (its answer came back)."""
    clock = ManualClock()
    gate = RateGate(RateBudget(per_second=100, per_minute=6000, burst=10, settle_timeout=5.0), clock)
    gate.pause(1.0)
    clock.advance(1.0)
    first, held = gate.try_acquire(), gate.try_acquire()
    gate.settle()
    assert (first, held, gate.try_acquire()) == (0.0, 5.0, 0.0)


def test_server_quota_is_spent_down_to_the_reserve() -> None:
    """RateLimit-Remaining 3 with reserve 1: two more requests, then wait for its reset."""
    clock = ManualClock()
    gate = RateGate(RateBudget(per_second=100, per_minute=6000, burst=10, reserve=1), clock)
    gate.observe([Quota("ratelimit", 3, 30.0)])
    results = [gate.try_acquire() for _ in range(3)]
    assert results[:2] == [0.0, 0.0]
    assert results[2] == pytest.approx(30.0)


def test_quotas_of_short_windows_are_left_to_the_sliding_bound() -> None:
    """A per-second window reporting 0 remaining with a whole-second Reset does not stop us for a second."""
    clock = ManualClock()
    gate = RateGate(RateBudget(per_second=100, per_minute=6000, burst=10), clock)
    gate.observe([Quota("second", 0, 1.0)])
    assert gate.try_acquire() == 0.0


def test_invalid_budget_is_rejected() -> None:
    """A zero budget is a configuration error, not an eternal wait."""
    with pytest.raises(ValueError, match="per_second"):
        RateBudget(per_second=0, per_minute=10)
