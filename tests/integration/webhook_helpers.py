"""Shared pieces of the webhook tests: a receiver on a real aiohttp test server over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.webhook_http import WebhookReceiver, add_webhook_routes
from service.core.clock import ManualClock
from service.core.signatures import WebhookVerifier, sign_standard, sign_wiseflow
from service.core.webhook_figures import WebhookFigures

SECRET = "test-webhook-secret"
NOW = 1_700_000_000

# Every recorded delivery, in order of arrival: the one that brought each event (in its row), and each
# redelivery (in inbox_deliveries, with its event's id), as (delivery id, event id).
ALL_DELIVERIES = (
    "SELECT delivery_id, event_id FROM (SELECT delivery_id, id AS event_id, received_at, 0 AS later, id AS n"
    " FROM inbox UNION ALL SELECT delivery_id, event_id, received_at, 1, rowid FROM inbox_deliveries)"
    " ORDER BY received_at, later, n"
)


def event_body(sequence: int = 1, event: str = "FINAL_GRADE", flow_id: int | None = 10, **extra: Any) -> bytes:
    """A WISEflow webhook body (the shape docs/wiseflow.md describes) with a fresh timestamp."""
    doc: dict[str, Any] = {
        "id": f"delivery-{sequence}",
        "sequence": sequence,
        "event": event,
        "timestamp": NOW,
        "data": {"flowId": flow_id, "participantId": 7},
    }
    doc.update(extra)
    return orjson.dumps(doc)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Default-scheme headers for `body`."""
    return {"X-Wiseflow-Signature": sign_wiseflow(secret, body), "Content-Type": "application/json"}


def standard_signed(body: bytes, msg_id: str, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    """Standard Webhooks headers for `body`."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard(secret, msg_id, timestamp, body),
    }


@dataclass
class Harness:
    """A running endpoint and what it writes to."""

    client: TestClient[web.Request, web.Application]
    store: Store
    inbox: Inbox
    figures: WebhookFigures
    clock: ManualClock
    wakes: list[int]
    receiver: WebhookReceiver

    async def rows(self) -> list[tuple[Any, ...]]:
        """Every inbox row as (sequence, event, status)."""
        async with self.store.db.execute("SELECT sequence, event, status FROM inbox ORDER BY sequence") as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def deliveries(self) -> list[str]:
        """Every recorded delivery id, in order of arrival."""
        async with self.store.db.execute(ALL_DELIVERIES) as cur:
            return [str(r[0]) for r in await cur.fetchall()]


@asynccontextmanager
async def running_receiver(
    tmp_path: Path,
    scheme: str = "wiseflow",
    secrets: tuple[str, ...] = (SECRET,),
    read_timeout: float = 5.0,
    **limits: int,
) -> AsyncIterator[Harness]:
    """Start the webhook endpoint on 127.0.0.1 (port 0) over a fresh database."""
    store = await Store.open(tmp_path / "webhooks.sqlite3")
    clock = ManualClock(start=NOW)
    figures = WebhookFigures()
    wakes: list[int] = []
    inbox = Inbox(store)
    receiver = WebhookReceiver(
        WebhookVerifier(scheme, secrets, tolerance=300),
        inbox,
        clock,
        figures,
        on_stored=lambda: wakes.append(1),
        read_timeout=read_timeout,
        **limits,  # max_body, max_unverified
    )
    app = web.Application()
    add_webhook_routes(app, receiver)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Harness(client, store, inbox, figures, clock, wakes, receiver)
    finally:
        await client.close()
        await store.close()
