"""The chaos soak: the real service through faults, kills and a concurrent full sync, then checked whole.

`simulate --profile chaos` (2% 5xx, duplicated, dropped and reordered webhooks, a world that changes every
5 s) with a short token lifetime, a 429 storm and two maintenance windows, against `run` SIGKILLed three
times and restarted on the same database, and a `sync --once --full` beside it. Then the world is frozen
and the faults calmed, the service is given time to converge, and the soak checks:

- the mirror (`export grades`) equals the simulator's truth;
- every grade version reached the fake SIS under one key, no key was reused for another record, and each
  participant's last delivery is the truth;
- every webhook answered 200 was processed (its inbox row is done);
- no request arrived inside a Retry-After (from the simulator's journal; see `checks.py` for the allowances);
- no process went over its rate budget in any 1-second or 60-second window, nor the credential over
  WISEflow's.

SOAK_SECONDS sets the chaos phase (default 60: `make test`; `make soak` runs 900), SOAK_SEED the seed
(default: a new one, printed with the figures so a failure can be replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.soak import checks
from tests.soak.harness import (
    RATE_PER_MINUTE,
    RATE_PER_SECOND,
    SIM_PER_MINUTE,
    SIM_PER_SECOND,
    JournalTail,
    Plan,
    Soak,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.soak, pytest.mark.slow]

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SEED = int(os.environ.get("SOAK_SEED") or secrets.randbelow(10**6))
FLOWS, PARTICIPANTS = 12, 8
# After the chaos: one poll interval, one reconciliation and the outbox's backoff fit in this many times over.
CONVERGE_S = 120.0
# Widths of the budget windows less the arrival jitter of loopback requests (see checks.GRANULARITY).
SECOND, MINUTE = 1.0 - 0.05, 60.0 - 0.05


@pytest.fixture
async def soak(tmp_path: Path) -> AsyncIterator[Soak]:
    """A soak's processes, all stopped at teardown; SOAK_ARTIFACTS=DIR keeps their files (logs, journal)."""
    keep = os.environ.get("SOAK_ARTIFACTS")
    workdir = Path(keep) / f"seed-{SEED}" if keep else tmp_path
    workdir.mkdir(parents=True, exist_ok=True)
    async with aiohttp.ClientSession() as session:
        running = Soak(Plan.draw(SEED, SECONDS), workdir, session)
        try:
            yield running
        finally:
            await running.stop()


async def test_chaos_soak(soak: Soak, capsys: pytest.CaptureFixture[str]) -> None:
    """Faults, three SIGKILLs and a concurrent full sync: nothing lost, nothing twice, no pause broken."""
    loop = asyncio.get_running_loop()
    phases: dict[str, float] = {"start": loop.time()}
    await soak.start_simulator(FLOWS, PARTICIPANTS)
    await soak.sim("POST", "/_sim/scenario", {"token_ttl": 4, "error_rate": 0.03, "sis_error_rate": 0.03})
    journal = JournalTail(soak)
    await soak.start_service()
    await soak.wait_ready()
    follower = asyncio.create_task(journal.follow())
    try:
        phases["chaos"] = loop.time()
        full_sync = await chaos(soak)
        phases["the full sync's end"] = loop.time()
        sync_code = await asyncio.wait_for(full_sync.wait(), timeout=600)
        await soak.sim("POST", "/_sim/scenario", CALM)
        phases["convergence"] = loop.time()
        converged = await converge(soak)
        soak.check_service()
        phases["stop"] = loop.time()
        stopped = await stop_gracefully(soak)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    phases["checks"] = loop.time()
    await journal.fetch()
    lines = sorted(journal.lines.values(), key=lambda line: line["time"])
    (soak.workdir / "journal.json").write_text(json.dumps(lines))  # evidence for a failure
    figures, problems = await examine(soak, lines)
    figures.update({"sync --once --full exit": sync_code, "run exit on SIGTERM": stopped})
    figures["converged"] = converged
    phases["end"] = loop.time()
    marks = list(phases.items())
    figures["seconds spent"] = {name: round(end - at, 1) for (name, at), (_, end) in pairwise(marks)}
    with capsys.disabled():
        replay = f"SOAK_SEED={SEED} SOAK_SECONDS={SECONDS:g} replays it"
        print(f"\nchaos soak, seed {SEED} ({replay}), files in {soak.workdir}:")
        for name, value in figures.items():
            print(f"  {name}: {value}")
    assert soak.crashes == [], f"seed {SEED}: {soak.crashes}"
    assert sync_code == 0, f"seed {SEED}: sync --once --full exited {sync_code}; see sync-full.log"
    assert stopped == 0, f"seed {SEED}: the last run exited {stopped} on SIGTERM"
    for name, found in problems.items():
        assert found == [], f"seed {SEED}: {name}: {len(found)}, e.g. {found[:5]}"


# Once the chaos is over: no new changes, no faults; duplicates and reordering are harmless and stay.
CALM = {
    "frozen": True,
    "error_rate": 0.0,
    "sis_error_rate": 0.0,
    "drop_rate": 0.0,
    "maintenance": {"open": False},
    "storm_429": {"open": False},
}


async def chaos(soak: Soak) -> asyncio.subprocess.Process:
    """Play the plan, each step at its moment; returns the full sync's process (still running, perhaps)."""
    plan = soak.plan
    full_sync: list[asyncio.subprocess.Process] = []

    async def scenario(body: dict[str, Any]) -> None:
        await soak.sim("POST", "/_sim/scenario", body)

    async def start_full_sync() -> None:
        full_sync.append(await soak.full_sync())

    # The Retry-Afters after which a kill follows are longer than a restart takes even on a busy machine:
    # a pause lost in the kill shows as a request of the next instance inside it.
    steps: list[tuple[float, Awaitable[None]]] = [
        (plan.storm_at, scenario({"storm_429": {"seconds": 4, "retry_after": 15}})),
        (plan.maintenance_at[0], scenario({"maintenance": {"seconds": 6, "retry_after": 3}})),
        (plan.maintenance_at[1], scenario({"maintenance": {"seconds": 6, "retry_after": 10}})),
        (plan.full_sync_at, start_full_sync()),
        (plan.kill_at, soak.kill_service()),
        (plan.storm_at, soak.kill_service(429, plan.kill_delays[0])),
        (plan.maintenance_at[1], soak.kill_service(503, plan.kill_delays[1])),
        (plan.seconds, asyncio.sleep(0)),
    ]
    began = asyncio.get_running_loop().time()

    async def at(moment: float, step: Awaitable[None]) -> None:
        # The plan's moments are the behaviour under test (faults at given times), not a synchronisation.
        await asyncio.sleep(max(0.0, began + moment - asyncio.get_running_loop().time()))
        await step

    await asyncio.gather(*(at(moment, step) for moment, step in steps))
    return full_sync[0]


async def converge(soak: Soak) -> str:
    """Wait until the service has caught up with the frozen world; 'yes', or what was still missing."""
    missing: list[str] = []

    async def caught_up() -> bool:
        missing[:] = await still_missing(soak)
        return not missing

    try:
        await wait_until(caught_up, what="the service caught up with the truth", within=CONVERGE_S, every=2.0)
    except AssertionError:
        return f"no, after {CONVERGE_S:g} s: {missing}"
    return "yes"


async def still_missing(soak: Soak) -> list[str]:
    """What keeps the service from being caught up (cheap checks first; the export only at the end)."""
    if (await soak.sim("GET", "/_sim/deliveries"))["outstanding"]:
        return ["webhooks still being delivered"]
    status = await soak.service_status()
    if status is None:
        return ["the service is not answering /status"]
    busy = [f"inbox {k}={v}" for k, v in status.get("inbox", {}).items() if k == "pending" and v]
    busy += [f"outbox {k}={v}" for k, v in status.get("outbox", {}).items() if k not in ("delivered",) and v]
    if busy:
        return busy
    truth = checks.truth_grades(await soak.sim("GET", "/_sim/truth"))
    mirror = checks.mirror_grades(await export(soak))
    behind = checks.differences(truth, mirror)
    behind += checks.sis_problems(truth, (await soak.sim("GET", "/_sis/grades"))["deliveries"])
    return [f"{len(behind)} differences, e.g. {behind[:3]}"] if behind else []


async def export(soak: Soak) -> list[dict[str, Any]]:
    """`export grades --format jsonl`: the mirror as an operator gets it."""
    code, out, err = await soak.cli("export", "grades", "--format", "jsonl")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def stop_gracefully(soak: Soak) -> int | None:
    """SIGTERM the running instance; its exit code (None when none was running)."""
    if soak.service is None:
        return None
    soak.service.terminate()
    return await asyncio.wait_for(soak.service.wait(), timeout=30)


def inbox_statuses(database: Path) -> dict[int, str]:
    """Each webhook sequence's inbox status, read from the database file (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {int(seq): str(status) for seq, status in db.execute("SELECT sequence, status FROM inbox")}


async def examine(soak: Soak, journal: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The figures to print and the problems found, by property."""
    truth = checks.truth_grades(await soak.sim("GET", "/_sim/truth"))
    mirror = checks.mirror_grades(await export(soak))
    sis = await soak.sim("GET", "/_sis/grades")
    webhooks = (await soak.sim("GET", "/_sim/deliveries"))["deliveries"]
    acknowledged = [d["sequence"] for d in webhooks if d["url"] == soak.hook_url and d["status"] == 200]
    inbox = inbox_statuses(soak.database)
    reused, split = checks.key_problems(sis["deliveries"])
    violations = checks.retry_after_violations(journal)
    processes = checks.by_client_name(journal)
    everyone = [line["time"] for line in journal]
    over_budget = [
        f"{name}: {most} in {width:g} s > {limit}"
        for name, times in processes.items()
        for width, limit in ((SECOND, RATE_PER_SECOND), (MINUTE, RATE_PER_MINUTE))
        if (most := checks.busiest(times, width)) > limit
    ]
    over_budget += [
        f"the credential: {most} in {width:g} s > {limit}"
        for width, limit in ((SECOND, SIM_PER_SECOND), (MINUTE, SIM_PER_MINUTE))
        if (most := checks.busiest(everyone, width)) > limit
    ]
    statuses = Counter(line["status"] for line in journal)
    figures: dict[str, Any] = {
        "plan": soak.plan,
        "kills": soak.kills,
        "run instances": soak.instances,
        "requests by status": dict(sorted(statuses.items())),
        "answers with Retry-After": sum(1 for line in journal if line.get("retryAfter")),
        "requests inside a Retry-After": len(violations),
        "busiest 1 s per process": {n: checks.busiest(t, SECOND) for n, t in sorted(processes.items())},
        "busiest 60 s per process": {n: checks.busiest(t, MINUTE) for n, t in sorted(processes.items())},
        "webhooks": dict(Counter(d["outcome"] for d in webhooks)),
        "webhooks answered 200": len(set(acknowledged)),
        "inbox": dict(Counter(inbox.values())),
        "mirror rows / truth rows": f"{len(mirror)} / {len(truth)}",
        "SIS": {k: sis[k] for k in ("unique", "duplicates", "conflicts")}
        | {"deliveries": len(sis["deliveries"])},
    }
    problems = {
        "mirror differs from the truth": checks.differences(truth, mirror),
        "SIS not at the truth": checks.sis_problems(truth, sis["deliveries"]),
        "keys reused for another record": reused,
        "versions under several keys": split,
        "webhooks answered 200 without effect": checks.unprocessed(acknowledged, inbox),
        "requests inside a Retry-After": [str(v) for v in violations],
        "windows over the budget": over_budget,
    }
    return figures, problems
