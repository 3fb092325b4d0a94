"""The one seam for time: every policy reads a `Clock`, so tests drive a `ManualClock` instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds for intervals, wall seconds (Unix) for timestamps and HTTP-dates."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: the fake clock of every unit test and simulation."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._mono = 0.0
        self._wall = start

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward; time never goes back."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._mono += seconds
        self._wall += seconds
