"""A Retry-After one process received holds every other process on the same database (two live clients)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.adapters.wiseflow import WiseflowClient
from service.core.clock import SystemClock
from service.errors import ApiError
from tests.conftest import SimHandle
from tests.integration.client_support import QUICK_BREAKER, client_settings
from tests.soak.checks import GRANULARITY, client_name, retry_after_violations
from tests.waiting import wait_until

RETRY_AFTER = 2


def client_on(url: str, store: Store, name: str) -> WiseflowClient:
    """A client named `name` (its X-Client-Name) saving and reading pauses in `store`, as a process would."""
    settings = client_settings(url, client_name=name)
    pauses = SqlitePauseStore(store, SystemClock())
    return WiseflowClient(settings, breaker_policy=QUICK_BREAKER, pause_store=pauses)


@pytest.mark.parametrize("fault", ["storm_429", "maintenance"])
async def test_a_running_client_honours_a_retry_after_another_client_received(
    simulator: SimHandle, tmp_path: Path, fault: str
) -> None:
    """A is refused (429/503, Retry-After 2); B, running on the same file, sends nothing, token included."""
    path = tmp_path / "shared.sqlite3"
    store_a, store_b = await Store.open(path), await Store.open(path)
    try:
        async with (
            client_on(simulator.api_url, store_a, "process-a") as a,
            client_on(simulator.api_url, store_b, "process-b") as b,
        ):
            await b.pauses.restore()  # B is up before the pause exists: only the per-request read can see it
            await simulator.scenario({fault: {"open": True, "retry_after": RETRY_AFTER}})
            refused = asyncio.create_task(a.license_info())
            await wait_until(saved_in(store_b), what="A saved WISEflow's pause")
            await simulator.scenario({fault: {"open": False}})
            # B has no token yet: its first request is POST /oauth2/token, which must wait as well.
            await b.license_info()
            with contextlib.suppress(ApiError):  # A may give up on its breaker; its pause is what matters
                await refused
        journal = await simulator.journal()
    finally:
        await store_a.close()
        await store_b.close()
    answer = first_refusal(journal)
    from_b = [line for line in journal if client_name(line) == "process-b"]
    assert from_b[0]["path"].endswith("/oauth2/token")
    assert min(line["time"] for line in from_b) >= answer["answered"] + RETRY_AFTER - GRANULARITY
    assert retry_after_violations(journal) == []


def saved_in(store: Store) -> Any:
    """An async predicate: a pause is saved in `store` (committed, so another connection reads it)."""
    pauses = SqlitePauseStore(store, SystemClock())

    async def saved() -> bool:
        return await pauses.load() is not None

    return saved


def first_refusal(journal: list[dict[str, Any]]) -> dict[str, Any]:
    """The first journal line answered 429 or 503 with a Retry-After."""
    return next(line for line in journal if line["status"] in (429, 503) and line.get("retryAfter"))
