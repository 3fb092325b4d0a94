"""The shared rate budget against the simulator: sliding windows, 429 storms, RateLimit-* headers."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from service.adapters.wiseflow import WiseflowClient
from service.core.ratebudget import RateGate
from service.errors import RateLimited
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import (
    Recorder,
    api_requests,
    client_settings,
    make_client,
    misbehaving_server,
)
from tests.soak.checks import retry_after_violations
from tests.waiting import wait_until


class Admissions:
    """Brackets each admission of a rate gate between two readings of its clock (the loop's).

    The gate stamps an admission with one reading taken inside `try_acquire`: `before` <= that stamp
    <= `after`, however long the process is stopped between the three readings.
    """

    def __init__(self, gate: RateGate) -> None:
        self.before: list[float] = []
        self.after: list[float] = []
        self._gate = gate
        self._try_acquire = gate.try_acquire

    def try_acquire(self, urgent: bool = False) -> float:
        """The gate's own decision, with the admission bracketed when it admits."""
        before = self._gate.clock.monotonic()
        wait = self._try_acquire(urgent=urgent)
        if wait <= 0:
            self.before.append(before)
            self.after.append(self._gate.clock.monotonic())
        return wait


async def test_no_one_second_window_exceeds_the_budget(
    simulator: SimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen eager callers, 20 req/s: no second holds more than 20 of the client's admissions.

    The limiter decides on its admissions; what it promises is that no 21 of them fall within a second
    (1.01 s with its guard). Send or arrival stamps cannot show it: the kernel may stop this process
    between an admission and its send for longer than any guard (a loaded 2-core machine did, for
    tens of milliseconds), and the simulator's arrival stamps add its own scheduling delay on top.
    The token request and every API call are admitted once each: admissions = journal entries.
    """
    recorder = Recorder()
    async with make_client(simulator.api_url, recorder, rate_per_second=20) as client:
        admissions = Admissions(client.limiter.gate)
        monkeypatch.setattr(client.limiter.gate, "try_acquire", admissions.try_acquire)

        async def worker() -> None:
            for _ in range(5):
                await client.license_info()

        await asyncio.gather(*(worker() for _ in range(16)))
    journal = await simulator.journal()
    # The 21st admission after any admission comes at least a second after it (bracketed: exact).
    spans = [last - first for first, last in zip(admissions.before, admissions.after[20:], strict=False)]
    assert len(api_requests(journal)) == 80
    assert len(recorder.records) == len(journal) == len(admissions.before)
    assert len(spans) == len(journal) - 20
    assert min(spans) >= 1.0
    assert [r for r in journal if r["status"] == 429] == []


async def test_a_429_storm_pauses_every_caller_until_retry_after(simulator: SimHandle) -> None:
    """In a storm no request arrives before the Retry-After of a 429 has elapsed; all calls end well."""
    async with make_client(simulator.api_url, rate_per_second=10) as client:
        await client.license_info()
        # Open until a 429 was answered: a timed storm could end before the first call on a busy machine.
        await simulator.scenario({"storm_429": {"open": True, "retry_after": 1}})
        calls = asyncio.gather(*(client.license_info() for _ in range(4)))
        await wait_until(lambda: 429 in [r["status"] for r in simulator.state.journal], what="a 429 answered")
        await simulator.scenario({"storm_429": {"open": False}})
        results = await calls
        paused = client.paused_seconds
    journal = api_requests(await simulator.journal())
    refused = [r["time"] for r in journal if r["status"] == 429]
    assert len(results) == 4
    assert len(refused) >= 1
    # Requests already in flight when the 429 was answered are allowed for, as the chaos soak does.
    assert retry_after_violations(journal) == []
    assert paused >= 0.9  # the first 429 lengthened the shared pause by about its Retry-After (1 s)


async def test_a_retry_after_beyond_the_maximum_ends_the_call_and_holds_everyone(simulator: SimHandle) -> None:
    """Retry-After 120 s > SYNC_RETRY_AFTER_MAX 60 s: RateLimited(120) at once; the next call sends nothing."""
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        await simulator.scenario({"storm_429": {"seconds": 30, "retry_after": 120}})
        with pytest.raises(RateLimited) as first:
            await client.license_info()
        with pytest.raises(RateLimited) as second:
            await client.get_flow(1)
    statuses = [r["status"] for r in api_requests(await simulator.journal())]
    assert (first.value.retry_after, first.value.status, first.value.attempt) == (120.0, 429, 1)
    assert second.value.retry_after > 119
    assert statuses == [200, 429]


async def test_ratelimit_headers_stop_us_before_the_server_says_429(make_simulator: SimFactory) -> None:
    """The server allows 6 a minute: after its RateLimit-Remaining runs down we stop, and no 429 comes."""
    sim = await make_simulator(rate_per_minute=6)
    async with make_client(sim.api_url, retry_after_max=5.0) as client:
        for _ in range(5):
            await client.license_info()
        with pytest.raises(RateLimited) as held:
            await client.license_info()
    journal = api_requests(await sim.journal())
    assert [r["status"] for r in journal] == [200] * 5
    assert held.value.retry_after > 5.0


class Ceiling:
    """An rng at the top of the jitter range: each backoff is (almost) its ceiling, so waits are known."""

    def random(self) -> float:
        """Just under 1."""
        return 0.999


def refusing_server(headers: dict[str, str], refusals: int) -> tuple[Any, list[float]]:
    """`GET /license/info` answers 429 with `headers` `refusals` times, then 200; arrival times kept."""
    arrivals: list[float] = []

    async def info(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) <= refusals:
            return web.json_response({"success": False}, status=429, headers=headers)
        return web.json_response({"success": True, "data": {"ok": True}})

    return misbehaving_server({("GET", "/v1/license/info"): info}), arrivals


async def test_a_429_with_only_ratelimit_reset_waits_for_the_reset() -> None:
    """No Retry-After, no Remaining, `RateLimit-Reset: 1`: the retry arrives a second later, not sooner."""
    server, arrivals = refusing_server({"RateLimit-Reset": "1"}, refusals=1)
    async with server as url, make_client(url) as client:
        assert await client.license_info() == {"ok": True}
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.99


@pytest.mark.parametrize("retry_after", ["0", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", None])
async def test_a_429_without_a_usable_wait_backs_off_instead_of_hammering(retry_after: str | None) -> None:
    """Retry-After 0, negative, garbage, past or absent: each retry waits at least its backoff ceiling."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    server, arrivals = refusing_server(headers, refusals=10)
    async with server as url:
        settings = client_settings(url, retry_base=0.05, retry_cap=1.0)
        async with WiseflowClient(settings, rng=Ceiling()) as client:
            with pytest.raises(RateLimited) as error:
                await client.license_info()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    ceilings = [0.999 * 0.05 * 2**n for n in range(4)]
    assert (len(arrivals), error.value.attempt, error.value.status) == (5, 5, 429)
    assert [gap >= ceiling - 0.005 for gap, ceiling in zip(gaps, ceilings, strict=True)] == [True] * 4


async def test_a_429_with_an_http_date_in_the_future_waits_until_then() -> None:
    """Retry-After as an IMF-fixdate two seconds ahead of the 429: no retry arrives before that date.

    The date is written when the 429 is answered and has whole seconds, so it lies between 1 and 2 s
    after the 429. Arrivals are stamped on the wall clock, the clock the client reads the date with:
    the retry must not arrive before the date itself (a gap measured from a date written before the
    server, client and token were up would shrink by that setup time, to under a second on a busy box).
    """
    arrivals: list[float] = []
    dates: list[float] = []

    async def info(request: web.Request) -> web.Response:
        now = time.time()
        arrivals.append(now)
        if len(arrivals) == 1:
            when = datetime.fromtimestamp(now, UTC) + timedelta(seconds=2)
            dates.append(when.replace(microsecond=0).timestamp())
            headers = {"Retry-After": format_datetime(when, usegmt=True)}
            return web.json_response({"success": False}, status=429, headers=headers)
        return web.json_response({"success": True, "data": {"ok": True}})

    async with misbehaving_server({("GET", "/v1/license/info"): info}) as url, make_client(url) as client:
        assert await client.license_info() == {"ok": True}
    assert len(arrivals) == 2
    assert dates[0] - arrivals[0] > 1.0  # the date is more than a second ahead of the 429 ...
    assert arrivals[1] >= dates[0]  # ... and the retry waited for it
