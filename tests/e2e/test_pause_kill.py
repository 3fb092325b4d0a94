"""kill -9 just after a 429: the restarted process sends nothing before the Retry-After has elapsed.

The pause is written to the database when the 429 arrives, before any later request is released (and
before the answer is logged), so a SIGKILL timed on that log line finds it saved. Before this, the pause
was saved by a once-a-second loop, and a restarted process sent `POST /oauth2/token` 1.4 s early.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import SimFactory, SimHandle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RETRY_AFTER = 5


def env_for(sim: SimHandle, db: Path) -> dict[str, str]:
    """A `sync --once` against the simulator, logging requests that fail (WARNING) as JSON on stderr."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_"))},
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": "demo-client",
        "WISEFLOW_CLIENT_SECRET": "demo-secret",
        "SYNC_DATABASE": str(db),
        "LOG_LEVEL": "WARNING",
    }


async def start_sync(env: dict[str, str]) -> asyncio.subprocess.Process:
    """`wiseflow-sync sync --once` as a real subprocess, stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "sync",
        "--once",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def kill_after_a_429(process: asyncio.subprocess.Process) -> None:
    """Read the process's log until it reports a 429, then SIGKILL it at once."""
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while line := await process.stderr.readline():
            if line.startswith(b"{") and orjson.loads(line).get("status") == 429:
                process.send_signal(signal.SIGKILL)
                assert await process.wait() == -signal.SIGKILL
                return
    pytest.fail("the process ended without reporting a 429")


async def test_a_restart_after_a_kill_just_after_a_429_waits_out_its_retry_after(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """429 with Retry-After 5 on the first request, SIGKILL on its log line: the next process waits it out."""
    sim = await make_simulator(flows=3, participants=3)
    env = env_for(sim, tmp_path / "pause.sqlite3")
    await sim.scenario({"storm_429": {"seconds": 600, "retry_after": RETRY_AFTER}})  # open until closed below
    await kill_after_a_429(await start_sync(env))
    await sim.scenario({"storm_429": {"seconds": 0, "retry_after": 0}})
    refused = [r["time"] for r in await sim.journal() if r["status"] == 429]
    assert len(refused) == 1

    second = await start_sync(env)
    async with asyncio.timeout(120):
        _, err = await second.communicate()
    later = [r for r in await sim.journal() if r["time"] > refused[0]]
    assert second.returncode == 0, err.decode()[-2000:]
    assert later[0]["path"] == "/v1/oauth2/token"
    # Both clocks are this machine's wall clock; the client counts from when the answer arrived.
    assert later[0]["time"] >= refused[0] + RETRY_AFTER - 0.05
