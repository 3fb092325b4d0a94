"""`sync --once` against a SIS that redirects, then is fixed: it pauses delivery, probes with one grade, and
finishes within seconds of the fix, with every grade delivered and none dead-lettered."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from service.cli import main
from tests.conftest import SimFactory
from tests.waiting import PROCESS_DEADLINE, wait_until


def failed_attempts(database: Path) -> int:
    """Delivery attempts the SIS failed so far (0 while the database or its outbox is not there yet)."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT coalesce(sum(attempts), 0) FROM outbox WHERE status = 'pending'"
            ).fetchone()
    except sqlite3.Error:
        return 0  # not migrated yet, or busy: look again
    return int(row[0])


async def test_sync_once_finishes_delivering_within_seconds_of_a_redirecting_sis_being_fixed(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """Redirected (308) until two probes failed, then fixed: exit 0 soon after, every grade at the SIS."""
    sim = await make_simulator(flows=6, participants=5)
    await sim.sis_scenario({"redirect": {"status": 308, "location": "/elsewhere"}})
    database = tmp_path / "sync.sqlite3"
    env = {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "SYNC_DATABASE": str(database),
        "SYNC_SINK_URL": sim.sis_url,
        "LOG_LEVEL": "WARNING",
    }
    command = asyncio.create_task(asyncio.to_thread(main, ["sync", "--once"], env))
    await wait_until(lambda: failed_attempts(database) >= 2, what="two probes refused", within=PROCESS_DEADLINE)
    assert not command.done()
    await sim.sis_scenario({"reset": True})
    fixed = time.monotonic()
    assert await asyncio.wait_for(command, timeout=PROCESS_DEADLINE) == 0
    assert time.monotonic() - fixed < 15.0  # the next probe is at most a few seconds away, not minutes
    with sqlite3.connect(database) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    delivered = (await sim.sis_grades())["deliveries"]
    assert counts == {"delivered": len(delivered)}
    assert delivered
