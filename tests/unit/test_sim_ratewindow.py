"""The simulator's rate-window arithmetic, driven by a ManualClock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.clock import ManualClock
from service.simulator.ratewindow import RateWindows, WindowSpec, WindowState, judge, reset_after


def test_second_window_admits_its_limit_then_refuses_with_retry_after() -> None:
    """The 4th request in one second of a 3/s window is refused and told to wait 1 s."""
    clock = ManualClock()
    windows = RateWindows(per_second=3, per_minute=100)
    verdicts = [windows.admit("c", clock.monotonic()) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.second.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after == 1


def test_window_reopens_after_its_length() -> None:
    """Once a second has passed since the window opened, requests are admitted again."""
    clock = ManualClock()
    windows = RateWindows(per_second=1, per_minute=100)
    assert windows.admit("c", clock.monotonic()).allowed
    clock.advance(0.999)
    assert not windows.admit("c", clock.monotonic()).allowed
    clock.advance(0.001)
    assert windows.admit("c", clock.monotonic()).allowed


def test_refused_requests_do_not_count() -> None:
    """Hammering a full window does not extend it: the next window admits its full limit."""
    clock = ManualClock()
    windows = RateWindows(per_second=2, per_minute=100)
    for _ in range(10):
        windows.admit("c", clock.monotonic())
    clock.advance(1.0)
    assert [windows.admit("c", clock.monotonic()).allowed for _ in range(3)] == [True, True, False]


def test_minute_window_binds_and_retry_after_counts_to_its_end() -> None:
    """After the minute's budget is spent, Retry-After is the rest of the minute, rounded up."""
    clock = ManualClock()
    windows = RateWindows(per_second=10, per_minute=15)
    for _ in range(3):
        for _ in range(5):
            assert windows.admit("c", clock.monotonic()).allowed
        clock.advance(1.5)
    refused = windows.admit("c", clock.monotonic())
    assert not refused.allowed
    assert refused.retry_after == 56  # 60 - 4.5 s, rounded up
    assert refused.minute == refused.binding


def test_binding_window_is_the_one_nearest_exhaustion() -> None:
    """RateLimit-* follow the window with fewer requests left."""
    clock = ManualClock()
    windows = RateWindows(per_second=200, per_minute=5000)
    verdict = windows.admit("c", clock.monotonic())
    assert verdict.second == verdict.binding
    assert (verdict.binding.limit, verdict.binding.remaining, verdict.binding.reset) == (200, 199, 1)
    assert (verdict.minute.limit, verdict.minute.remaining, verdict.minute.reset) == (5000, 4999, 60)


def test_credentials_have_separate_windows() -> None:
    """One credential exhausting its window leaves another untouched."""
    clock = ManualClock()
    windows = RateWindows(per_second=1, per_minute=100)
    assert windows.admit("a", clock.monotonic()).allowed
    assert not windows.admit("a", clock.monotonic()).allowed
    assert windows.admit("b", clock.monotonic()).allowed


def test_reset_is_rounded_up_and_at_least_one_second() -> None:
    """A window about to close still asks for a whole second; 59.2 s left is 60."""
    spec = WindowSpec(limit=1, length=60.0)
    assert reset_after(WindowState(start=0.0, count=1), spec, now=0.8) == 60
    assert reset_after(WindowState(start=0.0, count=1), spec, now=59.9999) == 1


@given(gaps=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=300))
def test_no_window_ever_admits_more_than_its_limit(gaps: list[float]) -> None:
    """Whatever the arrival times, each window admits at most its limit."""
    specs = (WindowSpec(5, 1.0), WindowSpec(40, 60.0))
    second = minute = None
    admitted_per_second: dict[float, int] = {}
    admitted_per_minute: dict[float, int] = {}
    now = 0.0
    for gap in gaps:
        now += gap
        second, minute, verdict = judge(second, minute, specs, now)
        if verdict.allowed:
            admitted_per_second[second.start] = admitted_per_second.get(second.start, 0) + 1
            admitted_per_minute[minute.start] = admitted_per_minute.get(minute.start, 0) + 1
        else:
            assert verdict.retry_after >= 1
    assert all(n <= 5 for n in admitted_per_second.values())
    assert all(n <= 40 for n in admitted_per_minute.values())
