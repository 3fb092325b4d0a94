"""`pause clear` as its own command resumes a `run` (a real process) and a `sync --once` already paused.

WISEflow (the simulator) answers the service's first request 429, or 503 for maintenance, with
`Retry-After: 3600`. The pause holds while the process runs; once an operator runs `wiseflow-sync pause
clear` on the same database the process resumes at its next look at the saved pause, long before the hour.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from pathlib import Path

import orjson
import pytest

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.commands.sync import sync_once
from service.core.clock import SystemClock
from tests.conftest import SimFactory, SimHandle
from tests.e2e.test_run_command import free_port, service_process, stop
from tests.e2e.test_service import service_env
from tests.e2e.test_sync_simulator import settings_for
from tests.waiting import PROCESS_DEADLINE, wait_until

pytestmark = pytest.mark.slow

HOUR = 3600


async def command(db: Path, *args: str) -> str:
    """`wiseflow-sync ARGS` on `db` as a separate process; its stdout (it must exit 0)."""
    env = {**os.environ, "SYNC_DATABASE": str(db)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(PROCESS_DEADLINE):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


async def saved(db: Path) -> bool:
    """A pause is saved in `db` (read on a connection of our own)."""
    store = await Store.open(db)
    try:
        return await SqlitePauseStore(store, SystemClock()).load() is not None
    finally:
        await store.close()


def answered_after(journal: list[dict[str, object]], moment: float) -> list[dict[str, object]]:
    """The requests WISEflow answered after `moment` (Unix seconds)."""
    return [line for line in journal if float(str(line["time"])) > moment]


@pytest.mark.parametrize("fault", ["storm_429", "maintenance"])
async def test_a_running_service_resumes_after_pause_clear(
    make_simulator: SimFactory, tmp_path: Path, fault: str
) -> None:
    """Paused for an hour, nothing sent while the pause stands; after `pause clear` requests are answered."""
    sim = await make_simulator(flows=2, participants=2)
    db = tmp_path / "run.sqlite3"
    env = service_env(sim, db, SYNC_HTTP_PORT=str(free_port()), SYNC_HTTP_HOST="127.0.0.1", LOG_LEVEL="WARNING")
    await sim.scenario({fault: {"open": True, "retry_after": HOUR}})
    async with service_process(env) as proc:
        await wait_until(lambda: saved(db), what="the service saved WISEflow's pause", within=PROCESS_DEADLINE)
        await sim.scenario({fault: {"open": False}})
        refused = max(float(line["time"]) for line in await sim.journal())
        shown = orjson.loads(await command(db, "pause", "show", "--format", "json"))
        sent_while_paused = answered_after(await sim.journal(), refused)
        cleared_at = time.time()
        lifted = await command(db, "pause", "clear")
        await wait_until(
            lambda: has_an_ok_answer_after(sim, cleared_at),
            what="a request answered 200 after the clear",
            within=PROCESS_DEADLINE,
        )
        logs = await stop(proc)
    events = [orjson.loads(line).get("event") for line in logs.splitlines() if line.startswith("{")]
    assert (shown["active"], shown["remaining"] > HOUR - 60) == (True, True)
    assert sent_while_paused == []
    assert "a service already running resumes at its next check" in lifted
    assert events.count("wiseflow.pause_cleared") == 1


async def has_an_ok_answer_after(sim: SimHandle, moment: float) -> bool:
    """True once WISEflow answered a request 200 after `moment`."""
    return any(line["status"] == 200 for line in answered_after(await sim.journal(), moment))


async def test_sync_once_waiting_out_a_pause_finishes_soon_after_it_is_cleared(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """`sync --once` sleeping on a 500 s Retry-After (SYNC_MAX_WAIT 600) exits 0 after `pause clear`."""
    sim = await make_simulator(flows=2, participants=2)
    db = tmp_path / "once.sqlite3"
    await sim.scenario({"storm_429": {"open": True, "retry_after": 500}})
    err = io.StringIO()
    running = asyncio.create_task(sync_once(settings_for(sim, db, SYNC_MAX_WAIT="600"), err))
    await wait_until(lambda: "pausing" in err.getvalue(), what="sync --once pausing", within=PROCESS_DEADLINE)
    await sim.scenario({"storm_429": {"open": False}})
    await command(db, "pause", "clear")
    async with asyncio.timeout(PROCESS_DEADLINE):
        code = await running
    assert code == 0, err.getvalue()
    assert "pausing 500" in err.getvalue() or "pausing 499" in err.getvalue()
