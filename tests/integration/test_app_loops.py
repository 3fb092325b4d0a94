"""The service's poll loop: it skips its runs while the breaker is open."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from service.app import poll_loop


class FakeBreaker:
    """Open for the first `open_checks` looks, closed after."""

    def __init__(self, open_checks: int) -> None:
        self.open_checks = open_checks
        self.looks = 0

    def retry_after(self) -> float:
        self.looks += 1
        return 0.01 if self.looks <= self.open_checks else 0.0


async def test_no_run_starts_while_the_breaker_is_open() -> None:
    """Three looks at an open breaker, then one run: the loop never ran while it was open."""
    breaker = FakeBreaker(open_checks=3)
    runs: list[int] = []

    async def run_sync() -> Any:
        runs.append(breaker.looks)
        raise asyncio.CancelledError  # one run is all this test needs

    service: Any = SimpleNamespace(
        client=SimpleNamespace(breaker=breaker), settings=SimpleNamespace(poll_interval=60.0), run_sync=run_sync
    )
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(poll_loop(service), timeout=5)
    assert runs == [4]
