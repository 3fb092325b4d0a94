"""Which pauses an operator's clear lifts in a running process: only those saved before it (generations).

A fake `PauseStore` in memory, which can answer a read from before the process's own write (stale), so the
tests can show that a pause is never taken for cleared just because its save has not been read back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from service.adapters.wiseflow.limiter import AsyncRateLimiter
from service.adapters.wiseflow.pauses import DurablePause
from service.core.breaker import Breaker, BreakerPolicy, State
from service.core.clock import ManualClock
from service.core.ports import PauseState, SavedPause
from service.core.ratebudget import RateBudget
from service.errors import StoreError

HOUR = 3600.0


class FakePauseStore:
    """The saved pause in memory; `stale` answers reads with the state before the latest save."""

    def __init__(self, clock: ManualClock) -> None:
        self.state = PauseState(None, 0)
        self.before_save = self.state
        self.stale = False
        self.broken = False
        self._clock = clock

    async def save(self, until_wall: float, reason: str) -> int:
        """Keep the longer pause under the current generation."""
        if self.broken:
            raise StoreError("disk I/O error")
        self.before_save = self.state
        if self.state.pause is None or self.state.pause.until < until_wall:
            pause = SavedPause(until_wall, reason, self._clock.wall())
            self.state = PauseState(pause, self.state.generation)
        return self.state.generation

    async def load(self) -> SavedPause | None:
        """The saved pause."""
        return (await self.current()).pause

    async def current(self) -> PauseState:
        """The saved pause and generation (as before the latest save, when stale)."""
        return self.before_save if self.stale else self.state

    async def clear(self) -> SavedPause | None:
        """An operator's `pause clear`: no pause, the next generation."""
        lifted = self.state.pause
        self.state = self.before_save = PauseState(None, self.state.generation + 1)
        return lifted


@dataclass
class Rig:
    """A DurablePause over a fake store, with a real limiter and breaker on one fake clock."""

    clock: ManualClock
    store: FakePauseStore
    limiter: AsyncRateLimiter
    breaker: Breaker
    pauses: DurablePause


def make() -> Rig:
    """A fresh rig: nothing saved, nothing held."""
    clock = ManualClock()
    store = FakePauseStore(clock)
    limiter = AsyncRateLimiter(RateBudget(per_second=10, per_minute=600), max_hold=60.0)
    breaker = Breaker("http://api/v1", BreakerPolicy(pause_max=HOUR), clock)
    return Rig(clock, store, limiter, breaker, DurablePause(store, clock, limiter, breaker))


async def refused(rig: Rig, seconds: float = HOUR) -> None:
    """What the transport does on a 429: pause the limiter, then save the pause."""
    rig.limiter.pause(seconds)
    await rig.pauses.record(seconds, "429 on GET /license/info")


def held(rig: Rig) -> tuple[bool, float]:
    """Whether a pause is held, and the limiter's seconds left (to the second)."""
    return rig.pauses.holding(), round(rig.limiter.gate.pause_remaining())


async def test_a_clear_lifts_a_pause_held_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """A 429's hour, saved, then cleared by an operator: the next check lifts it and logs it once."""
    caplog.set_level(logging.WARNING, logger="service.adapters.wiseflow")
    rig = make()
    await refused(rig)
    await rig.pauses.check()
    before = held(rig)
    await rig.store.clear()
    await rig.pauses.check()
    await rig.pauses.check()
    cleared = [r for r in caplog.records if getattr(r, "event", None) == "wiseflow.pause_cleared"]
    assert (before, held(rig)) == ((True, HOUR), (False, 0))
    assert [getattr(r, "lifted", None) for r in cleared] == [HOUR]


async def test_a_pause_not_cleared_holds_through_every_check() -> None:
    """Checks that read the same generation change nothing: the hour still holds."""
    rig = make()
    await refused(rig)
    for _ in range(3):
        await rig.pauses.check()
    assert held(rig) == (True, HOUR)


async def test_an_own_pause_saved_after_a_clear_is_not_lifted_before_it_is_read_back() -> None:
    """A clear the process had not seen, then its 429: a read from before its save does not lift it."""
    rig = make()
    await rig.store.clear()  # generation 1, before the 429; this process has read nothing yet
    await refused(rig)
    rig.store.stale = True  # the read does not show the write yet: no pause, generation 1
    await rig.pauses.check()
    assert held(rig) == (True, HOUR)


async def test_a_pause_whose_save_failed_is_never_taken_for_cleared() -> None:
    """The database refused the save: a later clear cannot have covered it, so it holds to its end."""
    rig = make()
    await rig.pauses.check()
    rig.store.broken = True
    await refused(rig)
    await rig.store.clear()
    await rig.pauses.check()
    assert held(rig) == (True, HOUR)


async def test_a_clear_ends_the_breakers_retry_after_opening() -> None:
    """A 503 with Retry-After 3600 opened the breaker; after a clear the next caller is its probe."""
    rig = make()
    rig.breaker.record_failure(rig.breaker.acquire(), "503 answer", HOUR)
    await rig.pauses.record(HOUR, "503 with Retry-After on GET /license/info")
    await rig.store.clear()
    await rig.pauses.check()
    left = rig.breaker.retry_after()
    probe = rig.breaker.acquire()
    assert (left, probe.probe, rig.breaker.state) == (0.0, True, State.HALF_OPEN)


async def test_a_pause_saved_after_the_clear_by_another_process_is_adopted() -> None:
    """Cleared, then another process saved 30 s: the lifted process holds those 30 s instead of the hour."""
    rig = make()
    await refused(rig)
    await rig.store.clear()
    await rig.store.save(rig.clock.wall() + 30.0, "429 on POST /oauth2/token")
    adopted = await rig.pauses.check()
    assert (adopted, held(rig)) == (True, (True, 30))
