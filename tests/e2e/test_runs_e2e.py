"""Run history with real processes: `sync --once` against `wiseflow-sync simulate`, then `runs`.

What an operator would check: the run is listed with its command, outcome and counts (grades added equal
WISEflow's truth), its requests equal what the simulator received, every log line it wrote carries its
`run_id`, a run WISEflow pauses is `paused`, and a bad `--limit` is one line and exit 2.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_contract_blackbox import (
    EXIT_PAUSED,
    EXIT_USAGE,
    Result,
    Sim,
    base_env,
    cli,
    command,
    free_port,
    http,
    http_json,
    stop,
    wait_http,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A small calm simulator of its own, never advanced: its truth is what a first sync mirrors."""
    port = free_port()
    env = base_env()
    logs = tmp_path_factory.mktemp("sim") / "sim.log"
    with logs.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own command)
            [*command(), "simulate", "--port", str(port), "--seed", "5", "--flows", "5", "--participants", "6"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        root = f"http://127.0.0.1:{port}"
        wait_http(root + "/_sim/scenario", proc)
        yield Sim(root, env)
    finally:
        stop(proc)


def sync_env(sim: Sim, db: Path, **extra: str) -> dict[str, str]:
    """A `sync --once` against the simulator (its default credentials) and its fake SIS, logging at INFO."""
    return base_env(
        WISEFLOW_API_URL=sim.api_url,
        WISEFLOW_CLIENT_ID="demo-client",
        WISEFLOW_CLIENT_SECRET="demo-secret",
        SYNC_SINK_URL=sim.root + "/_sis/grades",
        SYNC_DATABASE=str(db),
        SYNC_RATE_PER_SECOND="200",
        LOG_LEVEL="INFO",
        **extra,
    )


def sync_counting(sim: Sim, env: dict[str, str], cwd: Path) -> tuple[Result, int]:
    """`sync --once`, and how many requests the simulator received meanwhile."""
    http("DELETE", sim.root + "/_sim/journal")
    result = cli("sync", "--once", env=env, cwd=cwd)
    return result, len(http_json("GET", sim.root + "/_sim/journal")["requests"])


def runs(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """`runs --format json`, which must succeed."""
    listed = cli("runs", "--format", "json", env=env, cwd=cwd)
    assert (listed.code, listed.err) == (0, ""), listed.err
    result: list[dict[str, Any]] = json.loads(listed.out)
    return result


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of a command's stderr (its progress lines are plain text)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_sync_is_listed_with_its_counts_requests_and_logs_by_run_id(sim: Sim, tmp_path: Path) -> None:
    """`runs` shows the sync: command `sync`, `ok`, grades added = WISEflow's truth, requests = the
    simulator's journal; each line logged during the run carries its id (the SIS deliveries after it do
    not); the text table shows the same run."""
    env = sync_env(sim, tmp_path / "runs.sqlite3")
    result, received = sync_counting(sim, env, tmp_path)
    assert result.code == 0, result.err
    (run,) = runs(env, tmp_path)
    truth = http_json("GET", sim.root + "/_sim/truth")
    assessments = [a for f in truth["flows"] for a in f["assessments"]]
    graded = [a for a in assessments if a.get("grade") or a.get("adminGrade")]
    assert (run["command"], run["outcome"], run["error"], run["finished_at"] is not None) == (
        "sync",
        "ok",
        None,
        True,
    )
    assert run["requests"] == received
    grades = run["counts"]["grades"]
    assert (grades["added"], grades["changed"], grades["removed"], grades["queued"]) == (
        len(assessments),
        0,
        0,
        len(graded),
    )
    assert run["counts"]["flows"]["added"] == len(truth["flows"])
    assert run["counts"]["participants"]["added"] == sum(len(f["participants"]) for f in truth["flows"])

    logged = json_lines(result.err)
    end = next(i for i, line in enumerate(logged) if line.get("event") == "sync.run")
    during, after = logged[: end + 1], logged[end + 1 :]
    assert {line.get("run_id") for line in during} == {run["id"]}  # every line the run wrote
    assert len([line for line in during if line.get("event") == "wiseflow.request"]) == received
    assert after  # the deliveries to the SIS come after the run: not part of it
    assert all("run_id" not in line for line in after)

    table = cli("runs", env=env, cwd=tmp_path)
    header, row = table.out.splitlines()
    assert row.split()[:2] == [str(run["id"]), "sync"]
    assert f"+{len(assessments)} ~0 -0" in row


def test_a_run_wiseflow_pauses_is_listed_as_paused(sim: Sim, tmp_path: Path) -> None:
    """A 429 storm longer than SYNC_MAX_WAIT: `sync --once` exits 75 and its run is `paused`, with the
    429 as its error and the refused request counted."""
    env = sync_env(sim, tmp_path / "paused.sqlite3", SYNC_MAX_WAIT="1")
    sim.scenario({"storm_429": {"open": True, "retry_after": 30}})
    try:
        result, received = sync_counting(sim, env, tmp_path)
    finally:
        sim.scenario({"reset": True})
    assert result.code == EXIT_PAUSED, result.err
    (run,) = runs(env, tmp_path)
    assert (run["command"], run["outcome"], run["requests"]) == ("sync", "paused", received)
    assert received >= 1
    assert "RateLimited" in run["error"]
    assert "\n" not in run["error"]


@pytest.mark.parametrize("limit", ["0", "x", "-3", "1.5"])
def test_a_bad_limit_is_one_line_and_exit_2(limit: str, tmp_path: Path) -> None:
    """`--limit` takes a positive integer; anything else is refused before the database is looked at."""
    result = cli("runs", "--limit", limit, env=base_env(SYNC_DATABASE=str(tmp_path / "none")), cwd=tmp_path)
    assert (result.code, result.out) == (EXIT_USAGE, "")
    (line,) = result.err.strip().splitlines()
    assert "--limit" in line


def test_a_missing_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """No database at SYNC_DATABASE: one line naming it, exit 2, and still no file."""
    db = tmp_path / "absent.sqlite3"
    result = cli("runs", env=base_env(SYNC_DATABASE=str(db)), cwd=tmp_path)
    assert (result.code, result.out) == (EXIT_USAGE, "")
    (line,) = result.err.strip().splitlines()
    assert "SYNC_DATABASE" in line
    assert not db.exists()
