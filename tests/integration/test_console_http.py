"""The console's HTTP contract, without a browser: read-only, self-contained, escaped, pinned by its CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.store.pause import SqlitePauseStore
from service.app import SERVICE, build_app
from service.settings import load_settings

PAGES = ("/", "/certify")
SECRET = "console-webhook-secret-0123"  # at least 16 bytes, as the settings require
MakeClient = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    """Clients of services with no loops and no WISEflow behind them (the pages never call it)."""
    clients: list[TestClient[Any, Any]] = []

    async def make(**extra: str) -> TestClient[Any, Any]:
        env = {"WISEFLOW_API_KEY": "k", "SYNC_DATABASE": str(tmp_path / f"c{len(clients)}.sqlite3")} | extra
        client: TestClient[Any, Any] = TestClient(
            TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
        )
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_html_allowing_only_their_own_stylesheet(make_client: MakeClient, path: str) -> None:
    """The CSP forbids everything but the inline stylesheet, by the hash of the one the page carries."""
    client = await make_client(WISEFLOW_WEBHOOK_SECRET=SECRET)
    response = await client.get(path)
    body = await response.text()
    assert (response.status, response.content_type) == (200, "text/html")
    (css,) = re.findall(r"<style>(.*?)</style>", body, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; ")
    assert f"style-src 'sha256-{digest}'" in policy
    assert "unsafe" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', body)
    assert "<script" not in body
    assert [link for link in re.findall(r'(?:href|src)="([^"]*)"', body) if not link.startswith("/")] == []


@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_read_only(make_client: MakeClient, path: str) -> None:
    """Only GET (and HEAD) are served: any other method is refused and changes nothing."""
    client = await make_client(WISEFLOW_WEBHOOK_SECRET=SECRET)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert (await client.request(method, path)).status == 405
    assert (await client.head(path)).status == 200


async def test_not_ready_is_shown_with_its_reason(make_client: MakeClient) -> None:
    """Without a webhook secret the console says "Not ready" and why, as /readyz does."""
    client = await make_client()
    body = await (await client.get("/")).text()
    reason = (await (await client.get("/readyz")).json())["reason"]
    assert "Not ready" in body
    assert reason
    assert reason in body


async def test_a_saved_pause_is_shown_escaped(make_client: MakeClient) -> None:
    """The saved pause's reason is on the page as text: markup in it is escaped, never interpreted."""
    client = await make_client(WISEFLOW_WEBHOOK_SECRET=SECRET)
    service = client.server.app[SERVICE]
    await SqlitePauseStore(service.store, service.clock).save(service.clock.wall() + 600, "<b>storm</b> & co")
    body = await (await client.get("/")).text()
    assert "Paused" in body
    assert "&lt;b&gt;storm&lt;/b&gt; &amp; co" in body
    assert "<b>storm" not in body


async def test_the_sis_delivery_card_says_none_delivering_or_paused(make_client: MakeClient) -> None:
    """No SYNC_SINK_URL: "No sink"; a sink: "Delivering", or "Paused" once the deliverer pauses delivery."""
    assert "No sink" in await (await (await make_client(WISEFLOW_WEBHOOK_SECRET=SECRET)).get("/")).text()
    client = await make_client(WISEFLOW_WEBHOOK_SECRET=SECRET, SYNC_SINK_URL="http://127.0.0.1:9/grades")
    assert "Delivering" in await (await client.get("/")).text()
    client.server.app[SERVICE].status.record_sink_pause(True)
    body = await (await client.get("/")).text()
    assert "Delivering" not in body
    assert "outbox.paused" in body
