"""The limiter as it runs (aiolimiter's bucket + the gate) on a virtual-time loop: loop.time() is its clock."""

from __future__ import annotations

import asyncio
from bisect import bisect_left

import pytest

from service.adapters.wiseflow.limiter import AsyncRateLimiter
from service.core.ratebudget import RateBudget
from service.errors import RateLimited
from tests.virtual_time import run_virtual


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of times inside any half-open window [t, t + period)."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


async def admit_all(limiter: AsyncRateLimiter, callers: int, each: int) -> list[float]:
    """`callers` tasks each acquiring `each` slots as fast as allowed; the loop times of admission."""
    loop = asyncio.get_running_loop()
    admitted: list[float] = []

    async def caller() -> None:
        for _ in range(each):
            await limiter.acquire("GET", "/license/info", 1)
            admitted.append(loop.time())

    await asyncio.gather(*(caller() for _ in range(callers)))
    return admitted


@pytest.mark.parametrize(("per_second", "per_minute"), [(20, 1000), (200, 5000), (5, 60)])
def test_eager_callers_never_exceed_a_sliding_window_and_keep_the_pace(
    per_second: int, per_minute: int
) -> None:
    """Thirty callers for two minutes of budget: no 1 s or 60 s window over budget, >= 95% of the rate."""
    budget = RateBudget(per_second=per_second, per_minute=per_minute)
    total = min(per_second * 30, per_minute * 2)

    async def scenario() -> list[float]:
        return await admit_all(AsyncRateLimiter(budget, max_hold=60.0), callers=30, each=total // 30)

    admitted = run_virtual(scenario())
    span = max(admitted) - min(admitted)
    expected = min(per_second, per_minute / 60) * span
    assert most_in_any_window(admitted, 1.0) <= per_second
    assert most_in_any_window(admitted, 60.0) <= per_minute
    assert len(admitted) - 1 >= 0.95 * expected


def test_the_bucket_lets_only_a_small_burst_through_at_once() -> None:
    """Fifty callers at the same instant: `burst` go at once, the rest are spaced by the interval."""
    budget = RateBudget(per_second=20, per_minute=1000, burst=2)

    async def scenario() -> list[float]:
        return await admit_all(AsyncRateLimiter(budget, max_hold=60.0), callers=50, each=1)

    admitted = run_virtual(scenario())
    assert admitted[:2] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert admitted[2] == pytest.approx(budget.interval)
    assert admitted[-1] == pytest.approx(48 * budget.interval)


def test_a_pause_holds_every_caller_and_one_goes_first_after_it() -> None:
    """A 30 s pause: nobody before 30 s; then one request, and the next only when its answer settles."""
    budget = RateBudget(per_second=20, per_minute=1000, settle_timeout=10.0)

    async def scenario() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        limiter = AsyncRateLimiter(budget, max_hold=60.0)
        limiter.pause(30.0)
        first = await limiter.acquire("GET", "/a", 1)
        held = asyncio.create_task(limiter.acquire("GET", "/b", 1))
        await asyncio.sleep(4.0)  # virtual: the first request's answer takes 4 s
        settled_at = loop.time()
        limiter.settle()
        await held
        return [loop.time()], settled_at if first else -1.0

    (after,), settled_at = run_virtual(scenario())
    assert settled_at == pytest.approx(34.0)
    assert after == pytest.approx(34.0)


def test_a_wait_beyond_max_hold_is_handed_back_at_once() -> None:
    """A 120 s pause with SYNC_RETRY_AFTER_MAX 60: RateLimited(120) without waiting at all."""

    async def scenario() -> tuple[float, float]:
        limiter = AsyncRateLimiter(RateBudget(per_second=20, per_minute=1000), max_hold=60.0)
        limiter.pause(120.0)
        with pytest.raises(RateLimited) as held:
            await limiter.acquire("GET", "/a", 1)
        return held.value.retry_after or 0.0, asyncio.get_running_loop().time()

    assert run_virtual(scenario()) == pytest.approx((120.0, 0.0), abs=1e-6)
