"""Waiting for a state instead of sleeping for a guess: the one helper every test polls with.

A test that sleeps a fixed time races the machine: on a loaded box the state it expects arrives later, on
an idle one it wastes the time. These helpers poll a predicate until it holds, with a generous deadline
(waiting costs nothing when the state arrives early) and a message naming what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

DEADLINE = 30.0
# For a subprocess to start, or a whole command to run: Python's start-up alone can take tens of seconds
# on a 2-core machine that other test runs keep busy.
PROCESS_DEADLINE = 120.0
POLL = 0.02


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, what: str, within: float = DEADLINE, every: float = POLL
) -> None:
    """Poll `predicate` (plain or async) until it is true; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(every)  # the polling interval, not a synchronisation


def wait_until_blocking(
    predicate: Callable[[], bool], *, what: str, within: float = DEADLINE, every: float = POLL
) -> None:
    """`wait_until` for tests without an event loop (subprocess-driven, blocking HTTP)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        time.sleep(every)  # the polling interval, not a synchronisation
