"""GET /readyz of the real app: "can accept webhooks", and never held up by a long write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from service.app import SERVICE, Service, build_app
from service.settings import load_settings

Start = Callable[..., Awaitable[tuple[TestServer, Service]]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts the app (no background loop: nothing calls WISEflow) with extra settings; stopped at teardown."""
    servers: list[TestServer] = []

    async def run(**extra: str) -> tuple[TestServer, Service]:
        env = {
            "WISEFLOW_API_URL": "http://127.0.0.1:9/v1",
            "WISEFLOW_API_KEY": "k",
            "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
            "SYNC_DATABASE": str(tmp_path / f"r{len(servers)}.sqlite3"),
        } | extra
        env = {k: v for k, v in env.items() if v}
        server = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server, server.app[SERVICE]

    yield run
    for server in servers:
        await server.close()


async def readyz(server: TestServer) -> tuple[int, Any]:
    """Status and JSON of GET /readyz."""
    async with aiohttp.ClientSession() as session, session.get(str(server.make_url("/readyz"))) as response:
        return response.status, await response.json()


async def test_ready_with_a_secret_and_room_on_the_volume(start: Start) -> None:
    """The defaults with a webhook secret: 200 ready."""
    server, _ = await start()
    assert await readyz(server) == (200, {"status": "ready"})


async def test_not_ready_without_a_webhook_secret(start: Start) -> None:
    """No WISEFLOW_WEBHOOK_SECRET: 503 naming it (the pod would answer every webhook 401)."""
    server, _ = await start(WISEFLOW_WEBHOOK_SECRET="")
    status, body = await readyz(server)
    assert status == 503
    assert "WISEFLOW_WEBHOOK_SECRET" in body["reason"]


async def test_not_ready_when_the_volume_is_below_the_threshold(start: Start) -> None:
    """Free space under SYNC_MIN_FREE_BYTES (here a threshold no disk meets): 503 naming the setting."""
    server, _ = await start(SYNC_MIN_FREE_BYTES=str(2**50))
    status, body = await readyz(server)
    assert status == 503
    assert "SYNC_MIN_FREE_BYTES" in body["reason"]


async def test_a_long_write_does_not_hold_readiness(start: Start) -> None:
    """While a transaction holds the writer, /readyz still answers 200 from the last ping, before it ends."""
    server, service = await start()
    assert (await readyz(server))[0] == 200
    release = asyncio.Event()
    holding = asyncio.Event()

    async def long_write() -> None:
        async with service.store.transaction():
            holding.set()
            await release.wait()

    writer = asyncio.create_task(long_write())
    try:
        await holding.wait()
        assert await readyz(server) == (200, {"status": "ready"})
        assert not writer.done()  # answered while the write was still open
    finally:
        release.set()
        await writer
