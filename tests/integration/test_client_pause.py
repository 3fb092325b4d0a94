"""One pause policy for 429 and 503 (up to SYNC_PAUSE_MAX), saved before the next request leaves."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from aiohttp import web

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.adapters.wiseflow import WiseflowClient
from service.core.breaker import State
from service.core.clock import SystemClock
from service.core.ports import PauseState, SavedPause
from service.errors import ApiUnavailable, RateLimited
from tests.integration.client_support import client_settings, make_client, misbehaving_server
from tests.waiting import wait_until


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
        paused = client.breaker.retry_after() if status == 503 else client.limiter.gate.pause_remaining()
    capped = [r for r in caplog.records if getattr(r, "event", None) == "wiseflow.pause_capped"]
    assert 899.0 < paused <= 900.0
    assert [(getattr(r, "asked", None), getattr(r, "pause_max", None)) for r in capped] == [(7200.0, 900.0)]


class GatedPauseStore:
    """A `PauseStore` whose saves wait until the test opens the gate; remembers what was saved."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.saved: list[tuple[float, str]] = []
        self.asked = 0

    async def save(self, until_wall: float, reason: str) -> int:
        """Hold until the gate opens, then keep the pause (generation 0: never cleared)."""
        self.asked += 1
        await self.gate.wait()
        self.saved.append((until_wall, reason))
        return 0

    async def load(self) -> SavedPause | None:
        """Nothing saved by an earlier process."""
        return None

    async def current(self) -> PauseState:
        """Nothing saved by an earlier process, never cleared."""
        return PauseState(None, 0)

    async def clear(self) -> SavedPause | None:
        """Nothing to clear."""
        return None


def refused_once(retry_after: str) -> tuple[AbstractAsyncContextManager[str], list[float]]:
    """`GET /license/info` answers 429 with `Retry-After` once, then 200; arrival times kept."""
    arrivals: list[float] = []

    async def info(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return web.json_response({"success": False}, status=429, headers={"Retry-After": retry_after})
        return web.json_response({"success": True, "data": {"ok": True}})

    return misbehaving_server({("GET", "/v1/license/info"): info}), arrivals


async def test_no_request_leaves_before_the_pause_is_saved() -> None:
    """A 429 whose pause is still being written: the retry and every other caller wait for the write."""
    server, arrivals = refused_once("0")
    store = GatedPauseStore()
    async with server as url, WiseflowClient(client_settings(url), pause_store=store) as client:
        try:
            first = asyncio.create_task(client.license_info())
            await wait_until(lambda: store.asked == 1, what="the pause store asked once")
            second = asyncio.create_task(client.license_info())
            await wait_until(
                lambda: client.limiter.gate.pause_remaining() == 0 and client.pauses.held >= 1,
                what="the pause over and held",
            )
            sent_while_saving = len(arrivals)
            opened = time.monotonic()
        finally:
            store.gate.set()  # the client's close waits for the save: never leave it blocked
        await asyncio.gather(first, second)
    assert sent_while_saving == 1
    assert len(arrivals) == 3
    assert min(arrivals[1:]) >= opened
    assert [reason for _, reason in store.saved] == ["429 on GET /license/info"]


async def test_a_saved_pause_is_restored_by_the_next_client(tmp_path: Path) -> None:
    """Retry-After 30 on SQLite: saved with its reason, restored by a new client on the same file, cleared.

    Each clock reading of the client is bracketed by two of the test's, so the figures are exact however
    slowly a loaded machine runs the steps in between (a fixed "within a second" would race it).
    """
    server, _ = refused_once("30")
    db = await Store.open(tmp_path / "pause.sqlite3")
    pauses = SqlitePauseStore(db, SystemClock())
    try:
        async with server as url:
            async with WiseflowClient(client_settings(url), pause_store=pauses) as client:
                asked = time.time()
                with pytest.raises(RateLimited):
                    await client.license_info()
                answered = time.time()
            saved = await pauses.load()
            async with WiseflowClient(client_settings(url), pause_store=pauses) as later:
                before, since = time.time(), time.monotonic()
                restored = await later.pauses.restore()
                after = time.time()
                waiting = later.limiter.gate.pause_remaining()
                elapsed = time.monotonic() - since
        await pauses.clear()
        cleared = await pauses.load()
    finally:
        await db.close()
    assert saved is not None
    assert saved.reason == "429 on GET /license/info"
    assert asked + 30.0 <= saved.until <= answered + 30.0  # 30 s from the moment the 429 was read
    assert saved.until - after <= restored <= saved.until - before  # what was left of it at the restore
    assert restored - elapsed <= waiting <= restored  # ... is what every caller of the new client waits
    assert cleared is None
