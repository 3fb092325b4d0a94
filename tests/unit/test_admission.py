"""The admission gate as one context, on a virtual-time loop: what its exit does on every path.

The limiter and the breaker both read the loop's clock, so an hour of pauses and open times runs in
milliseconds and each admission's `loop.time()` is exactly when the gate let it go.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from service.adapters.wiseflow.admission import Admission
from service.adapters.wiseflow.records import Reply, Request
from service.core.backoff import RetryPolicy
from service.core.breaker import BreakerPolicy, State
from service.core.clock import ManualClock
from service.core.ports import PauseState, SavedPause
from service.core.ratebudget import RateBudget
from service.settings import Settings
from tests.unit.test_durable_pause import FakePauseStore
from tests.virtual_time import run_virtual

GET = Request("GET", "/license/info")


@dataclass
class Rig:
    """A gate over a fake pause store, with its limiter's `settle` counted."""

    admission: Admission
    store: FakePauseStore
    clock: ManualClock
    settled: list[float]


def make() -> Rig:
    """A fresh gate: 20 req/s, SYNC_RETRY_AFTER_MAX 60, a breaker that opens for 1 s, probes for 60 s."""
    settings = Settings(api_url="http://api.test/v1", rate_per_second=20, rate_per_minute=1000)
    clock = ManualClock()
    store = FakePauseStore(clock)
    admission = Admission(
        settings,
        clock,
        RetryPolicy.from_settings(settings),
        random.Random(1),
        budget=RateBudget(per_second=20, per_minute=1000, settle_timeout=10.0),
        breaker_policy=BreakerPolicy(open_base=1.0, probe_timeout=60.0),
        on_transition=None,
        pause_store=store,
    )
    rig = Rig(admission, store, clock, [])
    settle = admission.limiter.settle

    def counted() -> None:
        rig.settled.append(asyncio.get_running_loop().time())
        settle()

    admission.limiter.settle = counted  # type: ignore[method-assign]
    return rig


async def admitted_at(admission: Admission) -> float:
    """Pass the gate once (no answer needed) and return the loop time of the admission."""
    async with admission.slot(GET):
        return asyncio.get_running_loop().time()


def test_the_first_request_after_a_pause_settles_once_when_it_fails_and_the_next_goes_at_once() -> None:
    """Paused 5 s: the first request fails inside its slot; the exit settles once, the held one goes at 5 s.

    Without the settle on exit the held request would wait for the settle timeout (10 s more).
    """

    async def scenario() -> tuple[list[float], float]:
        rig = make()
        rig.admission.limiter.pause(5.0)
        inside = asyncio.Event()

        async def first() -> None:
            async with rig.admission.slot(GET):
                inside.set()
                await asyncio.sleep(0.5)  # virtual: waiting for an answer that never comes
                raise RuntimeError("the request failed before any answer")

        failing = asyncio.create_task(first())
        await inside.wait()
        held = asyncio.create_task(admitted_at(rig.admission))
        with pytest.raises(RuntimeError):
            await failing
        return rig.settled, await held

    settled, second = run_virtual(scenario())
    assert settled == pytest.approx([5.5])
    assert second == pytest.approx(5.5)


@pytest.mark.parametrize("ending", ["cancelled", "error"])
def test_a_probe_that_ends_without_an_answer_frees_the_probe_at_once(ending: str) -> None:
    """Half open after 1 s: the probe is cancelled (or fails) unanswered; the next caller probes at once.

    Without the release on exit the next caller would get `CircuitOpen` for the probe timeout (60 s).
    """

    async def scenario() -> tuple[State, float, State]:
        rig = make()
        breaker = rig.admission.breaker
        breaker.record_failure(breaker.acquire(), "503 answer", 1.0)
        await asyncio.sleep(1.0)  # virtual: the open time elapses on the gate's clock
        inside, fail = asyncio.Event(), asyncio.Event()

        async def probe() -> None:
            async with rig.admission.slot(GET):
                inside.set()
                await fail.wait()  # cancelled here, or told to fail
                raise RuntimeError("an error of our own before any answer")

        task = asyncio.create_task(probe())
        await inside.wait()
        during = breaker.state
        if ending == "cancelled":
            task.cancel()
        else:
            fail.set()
        with pytest.raises((asyncio.CancelledError, RuntimeError)):
            await task
        async with rig.admission.slot(GET) as slot:
            await slot.answered(Reply("GET", "/license/info", 200, {}, None, None, 1))
            return during, asyncio.get_running_loop().time(), breaker.state

    during, next_probe, after = run_virtual(scenario())
    assert (during, after) == (State.HALF_OPEN, State.CLOSED)
    assert next_probe == pytest.approx(1.0)


def test_a_429_answered_in_a_slot_is_saved_before_answered_returns_and_holds_everyone() -> None:
    """429 with Retry-After 30: saved by the time `answered` returns; the next caller goes at 30 s, settling."""

    async def scenario() -> tuple[PauseState, float, float, list[float]]:
        rig = make()
        async with rig.admission.slot(GET) as slot:
            refused = Reply("GET", "/license/info", 429, {"Retry-After": "30"}, None, None, 1, retry_after=30.0)
            await slot.answered(refused)
            saved = await rig.store.current()
        paused = rig.admission.limiter.gate.pause_remaining()
        return saved, paused, await admitted_at(rig.admission), rig.settled

    saved, paused, next_at, settled = run_virtual(scenario())
    assert saved.pause is not None
    assert (saved.pause.reason, saved.pause.until) == ("429 on GET /license/info", 1_700_000_030.0)
    assert paused == pytest.approx(30.0)
    assert next_at == pytest.approx(30.0)
    assert settled == pytest.approx([30.0])  # the first after the pause, once, when it left its slot


def test_a_pause_another_process_saved_holds_the_request_until_it_ends() -> None:
    """A 20 s pause saved in the store after this gate started: read before the request leaves, waited out."""

    async def scenario() -> float:
        rig = make()
        until = rig.clock.wall() + 20.0
        rig.store.state = rig.store.before_save = PauseState(
            SavedPause(until, "429 on GET /flows/search", 0), 0
        )
        return await admitted_at(rig.admission)

    assert run_virtual(scenario()) == pytest.approx(20.0)
