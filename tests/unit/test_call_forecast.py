"""The plan's call formula (bench/call_forecast.py), the oracle the sync tests hold a run's calls to."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.call_forecast import CallForecast, pages, predict_run_calls
from service.core.planner import PlanPolicy

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, dormant_interval=21600.0)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=1000))
def test_pages_covers_every_item_with_at_least_one_request(count: int, limit: int) -> None:
    """pages(n, l) requests hold n items, one fewer would not, and an empty list costs one."""
    n = pages(count, limit)
    assert n * limit >= count
    assert n == 1 or (n - 1) * limit < count


def test_the_call_formula() -> None:
    """250 flows listed, 40 events, two due flows of 250 and 0 participants: 3 + 1 + (3+1) + (1+1)."""
    forecast = predict_run_calls(250, [250, 0], 40, POLICY)
    assert (forecast, forecast.total) == (CallForecast(3, 1, 6), 10)


def test_a_first_run_asks_for_no_events() -> None:
    """Without a cursor the run fetches no participation events."""
    assert predict_run_calls(10, [], None, POLICY).events == 0
