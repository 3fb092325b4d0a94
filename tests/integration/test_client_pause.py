"""One pause policy for 429 and 503: Retry-After honoured up to SYNC_PAUSE_MAX, beyond it the maximum."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager

import pytest
from aiohttp import web

from service.core.breaker import State
from service.errors import ApiUnavailable, RateLimited
from tests.integration.client_support import make_client, misbehaving_server


def answering(status: int, retry_after: str) -> AbstractAsyncContextManager[str]:
    """`GET /license/info` always answers `status` with `Retry-After: retry_after`."""

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"success": False}, status=status, headers={"Retry-After": retry_after})

    return misbehaving_server({("GET", "/v1/license/info"): info})


async def test_a_503_retry_after_beyond_five_minutes_is_honoured() -> None:
    """A 503 asking for 600 s keeps the breaker open 600 s (it used to be cut to 300 s)."""
    async with answering(503, "600") as url, make_client(url) as client:
        with pytest.raises(ApiUnavailable):
            await client.license_info()
        state, left = client.breaker.state, client.breaker.retry_after()
    assert state is State.OPEN
    assert 599.0 < left <= 600.0


@pytest.mark.parametrize("status", [429, 503])
async def test_a_wait_beyond_sync_pause_max_waits_the_maximum_and_says_so(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """429 or 503 asking for two hours with SYNC_PAUSE_MAX 900: both pause 900 s, each logged once."""
    caplog.set_level(logging.WARNING, logger="service.adapters.wiseflow")
    async with answering(status, "7200") as url, make_client(url, pause_max=900.0) as client:
        with pytest.raises((RateLimited, ApiUnavailable)):
            await client.license_info()
        paused = client.breaker.retry_after() if status == 503 else client.transport.pause_remaining()
    capped = [r for r in caplog.records if getattr(r, "event", None) == "wiseflow.pause_capped"]
    assert 899.0 < paused <= 900.0
    assert [(getattr(r, "asked", None), getattr(r, "pause_max", None)) for r in capped] == [(7200.0, 900.0)]
