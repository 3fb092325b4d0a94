"""kill -9: a real `wiseflow-sync sync --once` subprocess killed mid-sync and mid-delivery converges.

Why duplicates are bounded but not zero: a grade version is marked delivered in its own transaction right
after the SIS's 2xx. A kill between the SIS recording it and that commit makes the next run send it again,
with the same Idempotency-Key, so the SIS drops the repeat. At most the deliveries in flight at the kill
(`SYNC_CONCURRENCY` of them) can be repeated; none can be lost, because a version enters the outbox in the
same transaction as the mirror change that produced it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.core.records import GradeVersion
from tests.conftest import SimFactory, SimHandle
from tests.waiting import PROCESS_DEADLINE, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 4


def env_for(sim: SimHandle, db: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_"))},
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": "demo-client",
        "WISEFLOW_CLIENT_SECRET": "demo-secret",
        "SYNC_DATABASE": str(db),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_CONCURRENCY": str(CONCURRENCY),
        "SYNC_RATE_PER_SECOND": "200",
        "SYNC_RATE_PER_MINUTE": "5000",
        "LOG_LEVEL": "WARNING",
    }


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=PROCESS_DEADLINE)
    return process.returncode or 0, out.decode(), err.decode()


async def kill_when(env: dict[str, str], condition: Callable[[], bool]) -> None:
    """Start `sync --once`, SIGKILL it as soon as `condition()` holds; fail if it ends first."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "sync",
        "--once",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    def kill_point_or_end() -> bool:
        return condition() or process.returncode is not None

    try:
        # Polled often: the kill must land close to the point, before the command moves much further.
        await wait_until(kill_point_or_end, what="the kill point", within=PROCESS_DEADLINE, every=0.005)
        if process.returncode is not None:
            pytest.fail("sync --once ended before the kill point")
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def graded_keys(truth: dict[str, Any]) -> set[str]:
    return {
        GradeVersion(
            f["flow"]["id"],
            a["participantId"],
            a.get("grade") or None,
            a.get("adminGrade") or None,
            a.get("date"),
        ).idempotency_key
        for f in truth["flows"]
        for a in f["assessments"]
        if a.get("grade") or a.get("adminGrade")
    }


async def test_killed_mid_sync_and_mid_delivery_converges_without_loss(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """Two SIGKILLs, a third run: mirror = truth, every version delivered, repeats only from in-flight ones."""
    sim = await make_simulator(flows=60, participants=60)
    env = env_for(sim, tmp_path / "kill.sqlite3")
    expected = graded_keys(await sim.truth())

    def assessments_requested() -> int:
        return sum(1 for r in list(sim.state.journal) if r["path"].endswith("/assessments"))

    await kill_when(env, lambda: assessments_requested() >= 20)  # mid-sync: about a third of the flows
    assert sim.state.sis.deliveries == []
    await kill_when(env, lambda: len(sim.state.sis.deliveries) >= len(expected) // 2)  # mid-delivery
    code, _, err = await run_cli(env, "sync", "--once")
    assert code == 0, err
    assert "wiseflow-sync sync: ok:" in err

    sis = await sim.sis_grades()
    delivered = [d["idempotencyKey"] for d in sis["deliveries"]]
    assert set(delivered) == expected  # nothing lost, nothing invented
    assert sis["duplicates"] <= CONCURRENCY  # only deliveries in flight at the kill were sent again

    code, out, err = await run_cli(env, "export", "grades", "--format", "jsonl")
    assert code == 0, err
    exported = {
        GradeVersion(r["flowId"], r["participantId"], r["grade"], r["adminGrade"], r["date"]).idempotency_key
        for r in map(json.loads, out.splitlines())
    }
    assert exported == expected

    with sqlite3.connect(tmp_path / "kill.sqlite3") as db:
        outcomes = [row[0] for row in db.execute("SELECT outcome FROM sync_runs ORDER BY run_id")]
    # The killed run is closed as interrupted by the next; the second run's sync finished before its kill.
    assert outcomes == ["interrupted", "ok", "ok"]
