"""The queues' pass loop (`run_passes`) on virtual time: wake-ups, due times, the idle interval, cancel.

Every test runs on `VirtualTimeLoop`, whose clock jumps to the next timer: an hour of idling costs
nothing, and `loop.time()` at each pass start says exactly why the pass ran (no sleeps, no slack).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from service.sync.passes import pause_before, run_passes
from tests.virtual_time import run_virtual

IDLE = 3600.0  # so long that only a wake-up or a due time can explain a prompt pass


class LoopClock:
    """The event loop's (virtual) time as both of the `Clock`'s readings."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return asyncio.get_running_loop().time()


Script = Callable[[int, asyncio.Event], Awaitable[float | None]]


@dataclass(frozen=True)
class Outcome:
    """A pass's report: when the next is due."""

    next_due: float | None = None


async def pass_starts(script: Script, passes: int, idle: float = IDLE) -> list[float]:
    """Run the loop until `passes` passes have started; the loop time at which each started.

    `script(n, woken)` is pass number n (from 0): it may wake the loop, block, and returns the next due time.
    """
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    starts: list[float] = []
    enough = asyncio.Event()

    async def one_pass() -> Outcome:
        starts.append(loop.time())
        if len(starts) == passes:
            enough.set()
            await asyncio.Event().wait()  # hold the last pass until the loop is cancelled
        return Outcome(await script(len(starts) - 1, woken))

    task = asyncio.create_task(run_passes(one_pass, woken, LoopClock(), idle))
    await enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return starts


def approx(times: list[float]) -> object:
    """Loop times as expected, give or take the nanosecond the virtual loop ticks per turn."""
    return pytest.approx(times, abs=1e-6)


def test_a_wake_during_a_pass_brings_the_next_pass_at_once() -> None:
    """The lost wake: woken at t=7 while a pass runs until t=9, the next pass starts at 9, not after idling.

    A loop that clears its wake-up after the pass (the deliverer's old loop) starts it at 9 + IDLE.
    """

    async def script(n: int, woken: asyncio.Event) -> float | None:
        if n == 0:
            loop = asyncio.get_running_loop()
            loop.call_later(7.0, woken.set)  # a row committed (and its wake) while this pass works
            await asyncio.sleep(9.0)
        return None

    assert approx([0.0, 9.0]) == run_virtual(pass_starts(script, passes=2))


def test_a_wake_between_passes_brings_a_pass_at_once() -> None:
    """Idle and woken at t=42: the next pass starts at 42."""

    async def script(n: int, woken: asyncio.Event) -> float | None:
        asyncio.get_running_loop().call_later(42.0, woken.set)
        return None

    assert approx([0.0, 42.0]) == run_virtual(pass_starts(script, passes=2))


def test_the_next_pass_runs_when_the_last_one_said_it_is_due() -> None:
    """A pass that returns a due time 2.5 s ahead is followed by one 2.5 s later, not after the idle wait."""

    async def script(n: int, woken: asyncio.Event) -> float | None:
        return asyncio.get_running_loop().time() + 2.5

    assert approx([0.0, 2.5, 5.0]) == run_virtual(pass_starts(script, passes=3))


def test_a_due_time_past_or_beyond_idle_is_bounded() -> None:
    """A due time already past runs the next pass at once; one beyond the idle interval waits only `idle`."""

    async def script(n: int, woken: asyncio.Event) -> float | None:
        now = asyncio.get_running_loop().time()
        return now - 100.0 if n == 0 else now + 10 * IDLE

    assert approx([0.0, 0.0, IDLE]) == run_virtual(pass_starts(script, passes=3))


def test_with_nothing_due_a_pass_runs_every_idle_interval() -> None:
    """No wake-up, no due time: passes at 0, idle, 2 x idle."""

    async def script(n: int, woken: asyncio.Event) -> float | None:
        return None

    assert approx([0.0, 5.0, 10.0]) == run_virtual(pass_starts(script, passes=3, idle=5.0))


def test_cancelling_while_idle_ends_the_loop_without_another_pass() -> None:
    """Cancelled while it waits, the loop ends with CancelledError and runs no further pass."""

    async def scenario() -> int:
        passes = 0

        async def one_pass() -> Outcome:
            nonlocal passes
            passes += 1
            return Outcome()

        task = asyncio.create_task(run_passes(one_pass, asyncio.Event(), LoopClock(), IDLE))
        await asyncio.sleep(IDLE / 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(10 * IDLE)  # virtual: proves no timer of the loop is left to fire
        return passes

    assert run_virtual(scenario()) == 1


def test_a_failing_pass_ends_the_loop_with_its_error() -> None:
    """The loop swallows nothing: a pass's error reaches its caller (the pass decides what it survives)."""

    async def one_pass() -> Outcome:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        run_virtual(run_passes(one_pass, asyncio.Event(), LoopClock(), IDLE))


@pytest.mark.parametrize(
    ("next_due", "now", "expected"),
    [(None, 100.0, 5.0), (103.0, 100.0, 3.0), (90.0, 100.0, 0.0), (200.0, 100.0, 5.0)],
)
def test_pause_before_the_next_pass(next_due: float | None, now: float, expected: float) -> None:
    """Until the due time, never negative, at most the idle interval."""
    assert expected == pause_before(next_due, now, 5.0)
