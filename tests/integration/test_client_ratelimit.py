"""The shared rate budget against the simulator: sliding windows, 429 storms, RateLimit-* headers."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import RateLimited
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import api_requests, make_client, most_in_any_window


async def test_no_one_second_window_exceeds_the_budget(simulator: SimHandle) -> None:
    """Sixteen eager callers, 20 req/s: the journal never holds more than 20 requests in any second."""
    async with make_client(simulator.api_url, rate_per_second=20) as client:

        async def worker() -> None:
            for _ in range(5):
                await client.license_info()

        await asyncio.gather(*(worker() for _ in range(16)))
    journal = await simulator.journal()
    times = [r["time"] for r in journal]
    assert len(api_requests(journal)) == 80
    assert most_in_any_window(times, 1.0) <= 20
    assert [r for r in journal if r["status"] == 429] == []


async def test_a_429_storm_pauses_every_caller_until_retry_after(simulator: SimHandle) -> None:
    """In a storm no request arrives before the Retry-After of a 429 has elapsed; all calls end well."""
    async with make_client(simulator.api_url, rate_per_second=10) as client:
        await client.license_info()
        await simulator.scenario({"storm_429": {"seconds": 1.5, "retry_after": 1}})
        results = await asyncio.gather(*(client.license_info() for _ in range(4)))
    journal = api_requests(await simulator.journal())
    refused = [r["time"] for r in journal if r["status"] == 429]
    too_early = [r for r in journal for t in refused if t < r["time"] < t + 1.0]
    assert len(results) == 4
    assert len(refused) >= 1
    assert too_early == []


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
