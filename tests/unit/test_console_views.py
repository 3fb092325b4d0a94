"""How the console writes times and durations for a reader."""

from __future__ import annotations

import pytest

from service.adapters.console.views import clock_time, short_time, span


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0004, "0 ms"), (0.85, "850 ms"), (12.44, "12.4 s"), (200.0, "3 min 20 s"), (7500.0, "2 h 5 min")],
)
def test_durations_read_in_the_unit_that_fits(seconds: float, text: str) -> None:
    """Milliseconds under a second, seconds under a minute, then minutes, then hours."""
    assert span(seconds) == text


def test_times_are_utc_to_the_second() -> None:
    """A Unix time is a UTC wall time to the second; no time is an empty cell."""
    assert clock_time(1_767_225_600.7) == "2026-01-01 00:00:00 UTC"
    assert clock_time(None) == ""
    assert short_time(1_767_225_600.7) == "01-01 00:00:00"
