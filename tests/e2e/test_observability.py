"""What an operator sees of a run against the simulator: INFO logs with every X-Trace-Id of the journal."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters.logs import configure_logging
from service.adapters.store import Store
from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.wiseflow.endpoints import Endpoint
from service.adapters.wiseflow.records import route_of
from service.certify import build
from service.commands.sync import sync_once
from service.settings import Settings, load_settings
from tests.conftest import SimHandle
from tests.soak.checks import retry_after_violations


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The process's JSON logs at INFO, written to a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("INFO", out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def route_of_template(path: str) -> str:
    """A registry path (`/flow/{flowId}`) as the journal's route (`/flow/{id}`)."""
    return Endpoint("GET", path, "", ()).route


def settings_for(sim: SimHandle, db: Path) -> Settings:
    """A service pointed at the simulator and its fake SIS."""
    return load_settings(
        {
            "WISEFLOW_API_URL": sim.api_url,
            "WISEFLOW_CLIENT_ID": sim.config.client_id,
            "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
            "SYNC_DATABASE": str(db),
            "SYNC_SINK_URL": sim.sis_url,
            "SYNC_RATE_PER_SECOND": "200",
        }
    )


async def test_a_run_logs_every_requests_x_trace_id_at_info(
    simulator: SimHandle, tmp_path: Path, log_lines: io.StringIO
) -> None:
    """`sync --once` at INFO: one line per WISEflow request, whose x_trace_ids are exactly the journal's."""
    assert await sync_once(settings_for(simulator, tmp_path / "s.sqlite3"), io.StringIO()) == 0
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    requests = [e for e in entries if e.get("event") == "wiseflow.request"]
    journal = await simulator.journal()
    assert sorted(e["x_trace_id"] for e in requests) == sorted(r["traceId"] for r in journal)
    assert all({"method", "route", "status", "duration_ms", "attempt"} <= e.keys() for e in requests)
    runs = [e for e in entries if e.get("event") == "sync.run"]
    assert [(r["outcome"], r["api_calls"] > 0, "duration_s" in r) for r in runs] == [("ok", True, True)]


@pytest.mark.parametrize(
    "scenario",
    [
        {"storm_429": {"seconds": 2.5, "retry_after": 1}},
        {"maintenance": {"seconds": 1.5, "retry_after": 1}},
    ],
    ids=["429-storm", "503-maintenance"],
)
async def test_certify_figures_equal_the_simulators_journal(
    simulator: SimHandle, tmp_path: Path, scenario: dict[str, Any]
) -> None:
    """After `sync --once` through a 429 storm or maintenance, certify's counts are what WISEflow received.

    Per endpoint, per run, 429s, and the Retry-After answers with how many were waited out: the
    simulator's journal says when each answer left and when the next request arrived.
    """
    settings = settings_for(simulator, tmp_path / "s.sqlite3")
    await simulator.scenario(scenario)
    assert await sync_once(settings, io.StringIO()) == 0
    journal = await simulator.journal()
    store = await Store.open(settings.database)
    try:
        async with SqliteUnitOfWork(store).read() as unit:
            figures = await unit.figures.stored()
    finally:
        await store.close()
    data = json.loads(orjson.dumps(build(settings, figures)))
    received = Counter(f"{r['method']} {route_of(r['path'].removeprefix('/v1'))}" for r in journal)
    observed = {f"{e['method']} {route_of_template(e['path'])}": e["observed"] for e in data["endpoints"]}
    assert {k: v for k, v in observed.items() if v} == dict(received)
    assert data["rate_limits"]["answers_429"] == sum(r["status"] == 429 for r in journal)
    assert data["rate_limits"]["requests"] == len(journal)
    assert data["sync"]["requests_per_run"]["latest"] == len(journal)
    assert data["sync"]["requests_per_run"]["first_full"] == len(journal)
    asked = [r for r in journal if r["status"] in (429, 503) and r["retryAfter"] is not None]
    assert asked, "the scenario's Retry-After answers reached the client"
    broken = {(v.refused_at, v.status) for v in retry_after_violations(journal)}
    assert data["rate_limits"]["retry_after_answers"] == len(asked)
    assert data["rate_limits"]["retry_after_honoured"] == len(asked) - len(broken) == len(asked)
