"""A pause `sync --once` saved holds every other command that calls WISEflow: real processes, one database.

The simulator answers `sync --once` 429 with a Retry-After; with SYNC_MAX_WAIT below it the command exits
75 with the pause saved. Then `webhooks ensure --dry-run`, `preflight` and `certify` run as processes of
their own on that database, each with its own `X-Client-Name`, so the simulator's journal says who sent
what and when: nothing of theirs may arrive before the saved pause ends. `diagnose` finds the request of
`webhooks ensure` by its X-Trace-Id; `preflight`, read-only, journals nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.commands import EXIT_PAUSED
from service.core.clock import SystemClock
from service.core.ports import SavedPause
from tests.conftest import SimFactory, SimHandle
from tests.soak.checks import GRANULARITY, client_name
from tests.waiting import PROCESS_DEADLINE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Long enough for three Python processes to start inside it on a busy machine, short enough to wait out.
RETRY_AFTER = 12
HOUR = 3600
ENSURE = ["webhooks", "ensure", "--dry-run", "--url", "https://sync.example.org/webhooks/wiseflow"]
PREFLIGHT = ["preflight", "--format", "json"]
CERTIFY = ["certify", "--format", "json"]


def env_for(sim: SimHandle, db: Path, name: str, max_wait: float) -> dict[str, str]:
    """A command against the simulator on `db`, sending `X-Client-Name: name`, logging JSON on stderr."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_"))},
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "WISEFLOW_CLIENT_NAME": name,
        "SYNC_DATABASE": str(db),
        "SYNC_MAX_WAIT": str(max_wait),
        "SYNC_RETRY_AFTER_MAX": "1",
        "LOG_LEVEL": "INFO",
    }


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`wiseflow-sync ARGS` as a process of its own: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), PROCESS_DEADLINE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def paused_by_sync(sim: SimHandle, db: Path, retry_after: int) -> SavedPause:
    """`sync --once` refused with `retry_after`, SYNC_MAX_WAIT 1: exit 75; the pause saved (storm closed)."""
    await sim.scenario({"storm_429": {"open": True, "retry_after": retry_after}})
    code, _, err = await cli(env_for(sim, db, "sync", max_wait=1), "sync", "--once")
    await sim.scenario({"storm_429": {"open": False}})
    assert code == EXIT_PAUSED, err[-2000:]
    shown = orjson.loads((await cli(env_for(sim, db, "pause", 1), "pause", "show", "--format", "json"))[1])
    assert shown["active"] is True
    store = await Store.open(db)
    try:
        saved = await SqlitePauseStore(store, SystemClock()).load()
    finally:
        await store.close()
    assert saved is not None
    return saved


def sent_by(journal: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The requests the simulator journalled with `X-Client-Name: name`."""
    return [line for line in journal if client_name(line) == name]


async def test_after_sync_saved_a_pause_no_command_sends_before_it_ends(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """Retry-After 12 saved by `sync --once`: ensure and preflight wait it out, certify sends nothing."""
    sim = await make_simulator(flows=2, participants=2)
    db = tmp_path / "paused.sqlite3"
    saved = await paused_by_sync(sim, db, RETRY_AFTER)
    (ensured, _, ensure_err), (checked, report, _), (certified, document, _) = await asyncio.gather(
        cli(env_for(sim, db, "ensure", max_wait=120), *ENSURE),
        cli(env_for(sim, db, "preflight", max_wait=120), *PREFLIGHT),
        cli(env_for(sim, db, "certify", max_wait=120), *CERTIFY),
    )
    journal = await sim.journal()
    ensure, preflight = sent_by(journal, "ensure"), sent_by(journal, "preflight")
    assert ensured == 0, ensure_err[-2000:]
    assert checked in (0, 1)  # the checks' verdict is not what this test is about
    assert orjson.loads(report)["checks"]
    assert (certified, orjson.loads(document)["webhooks"]["events_source"]) == (0, "SYNC_WEBHOOK_EVENTS")
    assert [line["path"] for line in ensure] == ["/v1/oauth2/token", "/v1/webhooks"]
    assert len(preflight) > 2
    assert min(line["time"] for line in ensure + preflight) >= saved.until - GRANULARITY
    assert sent_by(journal, "certify") == []
    # The journal of the database: ensure's request is found by its X-Trace-Id, preflight's is not there.
    diagnosed, found, _ = await cli(env_for(sim, db, "diagnose", 1), "diagnose", ensure[-1]["traceId"])
    missing, _, _ = await cli(env_for(sim, db, "diagnose", 1), "diagnose", preflight[-1]["traceId"])
    assert (diagnosed, missing) == (0, 1)
    assert "GET /webhooks" in found


async def test_a_pause_longer_than_sync_max_wait_ends_each_command_at_once_naming_it(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """An hour saved, SYNC_MAX_WAIT 1: ensure and preflight exit 75 naming it, certify answers; none sends."""
    sim = await make_simulator(flows=2, participants=2)
    db = tmp_path / "hour.sqlite3"
    saved = await paused_by_sync(sim, db, HOUR)
    before = len(await sim.journal())
    (ensured, _, ensure_err), (checked, _, preflight_err), (certified, document, _) = await asyncio.gather(
        cli(env_for(sim, db, "ensure", max_wait=1), *ENSURE),
        cli(env_for(sim, db, "preflight", max_wait=1), *PREFLIGHT),
        cli(env_for(sim, db, "certify", max_wait=1), *CERTIFY),
    )
    assert len(await sim.journal()) == before
    assert (ensured, checked, certified) == (EXIT_PAUSED, EXIT_PAUSED, 0)
    assert orjson.loads(document)["webhooks"]["events_source"] == "SYNC_WEBHOOK_EVENTS"
    for command, err in (("webhooks ensure", ensure_err), ("preflight", preflight_err)):
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"wiseflow-sync {command}: paused longer than SYNC_MAX_WAIT (1 s)"), last
        assert saved.reason in last
