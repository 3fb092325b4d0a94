"""An event loop on virtual time: its clock jumps to the next timer instead of waiting for it.

For code whose only waits are timers (`asyncio.sleep`, `wait_for`, `loop.call_at`), such as the rate
limiter: an hour of its schedule runs in milliseconds and `loop.time()` reads exactly what the code
waited, with no scheduling noise. Hand-written (30 lines) rather than the `looptime` pytest plugin, which
would patch pytest-asyncio's loop for the whole suite: here one test opts in by calling `run_virtual`.
Not for real I/O: a jump does not wait for a socket.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Answers what is ready now; instead of blocking for `timeout`, moves the loop's clock by it."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout is None or self.loop is None:
            return ready
        # Every pass moves the clock by at least a nanosecond, as a real monotonic clock ticks: a wake-up
        # due a float rounding error from now (aiolimiter computes some) must find time has moved, or it
        # would reschedule itself forever.
        self.loop.now += max(timeout, 1e-9)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """`loop.time()` starts at 0 and moves only by jumps to the next scheduled timer."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh `VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
