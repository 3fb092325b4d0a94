"""What unverified senders make the endpoint hold: bounded body size, bounded bytes of bodies in flight."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.webhook_http import WEBHOOK_PATH
from service.app import build_app
from service.settings import load_settings
from tests.integration.webhook_helpers import Harness, event_body, running_receiver, signed
from tests.waiting import wait_until


async def _stalled_post(port: int, declared: int) -> asyncio.StreamWriter:
    """Open a connection and send headers announcing `declared` body bytes, then only one of them."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Wiseflow-Signature: x\r\nContent-Length: {declared}\r\n\r\n{{"
    )
    writer.write(head.encode())
    await writer.drain()
    return writer


@pytest.fixture
async def harness_limit_one(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_receiver(tmp_path, max_unverified_bytes=1000) as h:
        yield h


async def test_a_body_over_the_configured_limit_is_413_and_the_limit_is_inclusive(tmp_path: Path) -> None:
    """With max_body 1000: 1001 bytes are 413 unread, exactly 1000 are read and judged (401 unsigned)."""
    async with running_receiver(tmp_path, max_body=1000) as h:
        unsigned = {"X-Wiseflow-Signature": "x"}
        over = await h.client.post(WEBHOOK_PATH, data=io.BytesIO(b"x" * 1001), headers=unsigned)
        at = await h.client.post(WEBHOOK_PATH, data=b" " * 1000, headers=unsigned)
        assert (over.status, await over.json()) == (413, {"error": "too_large"})
        assert at.status == 401
        assert await h.rows() == []


async def test_a_body_sent_whole_is_judged_while_stalled_bodies_fill_the_budget(tmp_path: Path) -> None:
    """Two stalled bodies of 500 bytes fill a budget of 1000: a signed body sent whole is still stored."""
    async with running_receiver(tmp_path, max_unverified_bytes=1000) as h:
        port = h.client.port
        assert port is not None
        stalled = [await _stalled_post(port, 500) for _ in range(2)]
        await wait_until(lambda: h.receiver.unverified == 2, what="two unverified reads")
        assert h.receiver.reads.held == 1000
        body = event_body(sequence=3)
        response = await h.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
        assert (response.status, await response.json()) == (200, {"status": "accepted"})
        assert h.figures.rejected["busy"] == 0
        for writer in stalled:
            writer.close()


async def test_a_stalled_body_over_the_budget_cuts_off_the_oldest_with_503_busy(tmp_path: Path) -> None:
    """A third stalled body of 500 over a budget of 1000: the oldest read ends 503 busy, Retry-After: 1."""
    async with running_receiver(tmp_path, max_unverified_bytes=1000) as h:
        port = h.client.port
        assert port is not None
        stalled = [await _stalled_post(port, 500) for _ in range(2)]
        await wait_until(lambda: h.receiver.unverified == 2, what="two unverified reads")
        stalled.append(await _stalled_post(port, 500))
        await wait_until(lambda: h.figures.rejected["busy"] == 1, what="the oldest read cut off")
        assert (h.receiver.unverified, h.receiver.reads.held) == (2, 1000)
        assert await h.rows() == []
        for writer in stalled:
            writer.close()


async def test_the_budget_is_released_once_the_reads_end(tmp_path: Path) -> None:
    """After the stalled senders go away (and after refused requests), nothing is held and deliveries store."""
    async with running_receiver(tmp_path, max_unverified_bytes=1000) as h:
        port = h.client.port
        assert port is not None
        stalled = [await _stalled_post(port, 500) for _ in range(2)]
        await wait_until(lambda: h.receiver.unverified == 2, what="two unverified reads")
        bad = await h.client.post(WEBHOOK_PATH, data=b"{}", headers={"X-Wiseflow-Signature": "x"})
        assert bad.status == 401
        for writer in stalled:
            writer.close()
        await wait_until(lambda: h.receiver.unverified == 0, what="no unverified read left")
        assert h.receiver.reads.held == 0
        for sequence in (4, 5, 6):
            body = event_body(sequence=sequence)
            response = await h.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
            assert response.status == 200
        assert [row[0] for row in await h.rows()] == [4, 5, 6]


async def test_refused_requests_give_their_slot_back(harness_limit_one: Harness) -> None:
    """With a budget of 1000 bytes, a 401, a 413 and a 400 in turn each leave nothing held behind them."""
    h = harness_limit_one
    for data, status in ((b"{}", 401), (b"x" * 70_000, 413)):
        response = await h.client.post(WEBHOOK_PATH, data=data, headers={"X-Wiseflow-Signature": "x"})
        assert response.status == status
    body = b"[1]"
    response = await h.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert response.status == 400
    body = event_body(sequence=8)
    response = await h.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert response.status == 200
    assert (h.receiver.unverified, h.receiver.reads.held) == (0, 0)


async def test_the_service_reads_its_body_limit_from_sync_webhook_max_body(tmp_path: Path) -> None:
    """Through build_app with SYNC_WEBHOOK_MAX_BODY=2048: 2049 bytes are 413, 2048 are judged (401)."""
    env = {
        "WISEFLOW_API_KEY": "k",
        "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        "SYNC_DATABASE": str(tmp_path / "a.sqlite3"),
        "SYNC_WEBHOOK_MAX_BODY": "2048",
    }
    async with TestClient(TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")) as client:
        unsigned = {"X-Wiseflow-Signature": "x"}
        over = await client.post(WEBHOOK_PATH, data=io.BytesIO(b"x" * 2049), headers=unsigned)
        at = await client.post(WEBHOOK_PATH, data=b" " * 2048, headers=unsigned)
        assert (over.status, await over.json()) == (413, {"error": "too_large"})
        assert at.status == 401
