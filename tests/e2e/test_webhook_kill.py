"""kill -9 between the 200 and the processing: a real `wiseflow-sync run` process loses no acknowledged event.

The simulator answers slowly (3 s a call), so the inbox worker is still refreshing when the process is
killed right after WISEflow got its 200. The event must be in the database, pending; the next process
processes it and the grade reaches the SIS.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from service.commands.webhooks import ensure
from service.settings import load_settings
from tests.conftest import SimFactory, SimHandle
from tests.waiting import PROCESS_DEADLINE, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(sim: SimHandle, db: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_"))},
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "SYNC_DATABASE": str(db),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_HTTP_HOST": "127.0.0.1",
        "SYNC_HTTP_PORT": str(port),
        "SYNC_POLL_INTERVAL": "3600",
        "SYNC_RATE_PER_SECOND": "200",
        "SYNC_RATE_PER_MINUTE": "5000",
        "LOG_LEVEL": "WARNING",
    }


async def _start(env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start `wiseflow-sync run` and wait until its first sync run is over and its outbox is drained."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "run", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{env['SYNC_HTTP_PORT']}/status"

    async def first_run_over() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                status = await response.json() if response.status == 200 else {}
                undelivered = sum(n for key, n in status.get("outbox", {}).items() if key != "delivered")
                return status.get("runs", 0) >= 1 and not undelivered
        except aiohttp.ClientError:
            return False

    await wait_until(first_run_over, what="the first run over and its outbox drained", within=PROCESS_DEADLINE)
    return process


def _inbox(db: Path, sequence: int) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status FROM inbox WHERE sequence = ?", (sequence,)).fetchone()
    return None if row is None else str(row[0])


async def test_sigkill_after_the_200_loses_nothing(make_simulator: SimFactory, tmp_path: Path) -> None:
    """Acknowledged, then killed mid-refresh: the event is pending on disk and processed by the next process."""
    sim = await make_simulator()
    db, port = tmp_path / "kill.sqlite3", _free_port()
    env = _env(sim, db, port)
    process = await _start(env)
    try:
        url = f"http://127.0.0.1:{port}/webhooks/wiseflow"
        assert (
            await ensure(
                load_settings(env), url, ["FINAL_GRADE", "ASSESSMENT"], dry_run=False, out=io.StringIO()
            )
            == 0
        )
        await sim.scenario({"latency_ms": 3000})
        change = next(
            c for c in await sim.advance({"grade_changes": 1}) if c["event"] in ("FINAL_GRADE", "ASSESSMENT")
        )

        async def acknowledged() -> bool:
            return any(
                d["sequence"] == change["sequence"] and d["outcome"] == "delivered"
                for d in await sim.deliveries()
            )

        await wait_until(acknowledged, what="the event acknowledged with a 200")
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert _inbox(db, change["sequence"]) == "pending"  # on disk, not yet processed

    await sim.scenario({"latency_ms": 0})
    process = await _start(env)
    try:

        async def processed_and_delivered() -> bool:
            sis = await sim.sis_grades()
            pair = (change["flowId"], change["participantId"])
            got = [d for d in sis["deliveries"] if (d["flowId"], d["participantId"]) == pair]
            return (
                _inbox(db, change["sequence"]) == "done" and bool(got) and got[-1]["grade"] == change["grade"]
            )

        await wait_until(processed_and_delivered, what="the event processed and delivered")
        sis = await sim.sis_grades()
        pair = (change["flowId"], change["participantId"])
        new_grade = [
            d
            for d in sis["deliveries"]
            if (d["flowId"], d["participantId"]) == pair and d["grade"] == change["grade"]
        ]
        assert len(new_grade) == 1  # the webhook's grade reached the SIS exactly once
        assert sis["duplicates"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
