"""Readiness decides "can accept webhooks" from the secret, the free space and a bounded ping."""

from __future__ import annotations

import asyncio

from service.adapters.readiness import Readiness
from service.errors import ServiceError

MIB = 1024 * 1024


def readiness(
    *, secret: bool = True, free: int = 100 * MIB, minimum: int = 64 * MIB, ping: object = None
) -> Readiness:
    """A Readiness over fakes: `free` bytes on the volume, `ping` (default: succeeds at once)."""

    async def ok() -> None:
        return None

    return Readiness(
        database="/data/db.sqlite3",
        has_webhook_secret=secret,
        min_free_bytes=minimum,
        ping=ping or ok,  # type: ignore[arg-type]
        free=lambda _path: free,
        timeout=0.05,
    )


async def test_ready_when_every_check_passes() -> None:
    """Secret present, space above the threshold, database answering: ready."""
    verdict = await readiness().check()
    assert verdict.ready


async def test_not_ready_without_a_webhook_secret() -> None:
    """No secret: every webhook would get 401, so the pod must not receive them."""
    verdict = await readiness(secret=False).check()
    assert not verdict.ready
    assert "WISEFLOW_WEBHOOK_SECRET" in verdict.reason


async def test_not_ready_below_the_free_space_threshold() -> None:
    """Below SYNC_MIN_FREE_BYTES: commits would start failing, webhooks would get 503."""
    verdict = await readiness(free=10 * MIB).check()
    assert not verdict.ready
    assert "SYNC_MIN_FREE_BYTES" in verdict.reason
    assert (await readiness(free=10 * MIB, minimum=0).check()).ready  # 0 turns the check off


async def test_a_failing_database_is_not_ready_and_never_raises() -> None:
    """A ping that raises gives a verdict naming the error class, not an exception."""

    async def broken() -> None:
        raise ServiceError("database not writable")

    verdict = await readiness(ping=broken).check()
    assert not verdict.ready
    assert "ServiceError" in verdict.reason


async def test_a_long_write_never_holds_the_probe() -> None:
    """A ping stuck behind a write: the answer comes within the timeout, from the last ping; one in flight."""
    release = asyncio.Event()
    started = running = most = 0

    async def ping() -> None:
        nonlocal started, running, most
        started += 1
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1

    check = readiness(ping=ping)
    first = await check.check()  # stuck before any ping completed: not known to be writable yet
    assert not first.ready
    assert "busy" in first.reason
    assert not (await check.check()).ready
    assert started == 1  # the second probe waited on the same ping instead of queueing another
    release.set()
    assert (await check.check()).ready  # the stuck ping completed: writable
    release.clear()
    assert (await check.check()).ready  # a new ping, stuck again: the last completed one speaks
    stuck = started
    assert (await check.check()).ready
    assert started == stuck
    assert most == 1
    await check.close()
