"""The service's poll loop: it skips its runs while the breaker is open."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.sync.loops import poll_loop


class FakeBreaker:
    """Open for the first `open_checks` looks, closed after."""

    def __init__(self, open_checks: int) -> None:
        self.open_checks = open_checks
        self.looks = 0

    def retry_after(self) -> float:
        self.looks += 1
        return 0.01 if self.looks <= self.open_checks else 0.0


class OneRun:
    """A runner whose first run ends the test."""

    def __init__(self, breaker: FakeBreaker) -> None:
        self.breaker = breaker
        self.runs: list[int] = []

    async def run(self, full: bool = False) -> Any:
        self.runs.append(self.breaker.looks)
        raise asyncio.CancelledError  # one run is all this test needs


async def test_no_run_starts_while_the_breaker_is_open() -> None:
    """Three looks at an open breaker, then one run: the loop never ran while it was open."""
    breaker = FakeBreaker(open_checks=3)
    runner: Any = OneRun(breaker)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(poll_loop(runner, breaker.retry_after, 60.0), timeout=5)
    assert runner.runs == [4]
