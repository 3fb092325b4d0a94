"""`pause clear` run as its own command lifts the pause of a client already running on the same SQLite file.

Real parts: the simulator answering 429 or 503 with `Retry-After: 3600`, a real database file, the
`wiseflow-sync pause clear` command with its own connection, and a client (or a whole `sync --once`) that
keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.adapters.wiseflow import WiseflowClient
from service.cli import main
from service.core.clock import SystemClock
from service.core.ports import PauseState
from service.errors import ServiceError
from tests.conftest import SimHandle
from tests.integration.client_support import QUICK_BREAKER, client_settings
from tests.waiting import wait_until

HOUR = 3600


async def pause_command(db: Path, action: str) -> int:
    """`wiseflow-sync pause ACTION` on `db`, in a worker thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(main, ["pause", action], {"SYNC_DATABASE": str(db)})


async def test_clear_counts_a_generation_and_a_save_says_which_it_is_under(tmp_path: Path) -> None:
    """Saved under generation 0; clear returns it and leaves generation 1; the next save is under 1."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        pauses = SqlitePauseStore(store, SystemClock())
        first = await pauses.save(time.time() + HOUR, "429 on GET /license/info")
        lifted = await pauses.clear()
        after_clear = await pauses.current()
        second = await pauses.save(time.time() + 30, "429 on POST /oauth2/token")
        now = await pauses.current()
    finally:
        await store.close()
    assert (first, second, after_clear) == (0, 1, PauseState(None, 1))
    assert (lifted.reason if lifted else None) == "429 on GET /license/info"
    assert (now.generation, now.pause.reason if now.pause else None) == (1, "429 on POST /oauth2/token")


@pytest.mark.parametrize("fault", ["storm_429", "maintenance"])
async def test_a_running_client_resumes_after_pause_clear_and_not_before(
    simulator: SimHandle, tmp_path: Path, fault: str
) -> None:
    """Retry-After 3600: a check keeps the pause; after `pause clear` the client's next look lifts it."""
    db = tmp_path / "db.sqlite3"
    store = await Store.open(db)
    try:
        pauses = SqlitePauseStore(store, SystemClock())
        settings = client_settings(simulator.api_url)
        async with WiseflowClient(settings, breaker_policy=QUICK_BREAKER, pause_store=pauses) as client:
            await client.pauses.restore()
            await simulator.scenario({fault: {"open": True, "retry_after": HOUR}})
            with pytest.raises(ServiceError):
                await client.license_info()
            await simulator.scenario({fault: {"open": False}})
            refused = len(await simulator.journal())
            await client.pauses.check()  # the saved pause, read back and not cleared: it holds
            with pytest.raises(ServiceError):  # and nothing leaves: the limiter or the breaker says wait
                await client.license_info()
            held = (client.pauses.holding(), len(await simulator.journal()))
            assert await pause_command(db, "clear") == 0

            async def lifted() -> bool:
                await client.pauses.look()  # what the service's `pause` loop does every CHECK_INTERVAL
                return not client.pauses.holding()

            await wait_until(lifted, what="the client saw the clear")
            await client.license_info()
    finally:
        await store.close()
    after = (await simulator.journal())[refused:]
    assert held == (True, refused)
    assert [r["status"] for r in after][-1] == 200
