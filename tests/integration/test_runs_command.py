"""`runs` and `/status`'s `last_run` on a real SQLite file after real runs against the simulator: the
counts match what the mirror's tables gained and lost, the requests what the simulator received."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.store import Store
from service.adapters.store.migrations import MIGRATIONS
from service.app import SERVICE, build_app
from service.cli import main
from service.commands.runs import read_runs, write_runs
from service.commands.sync import sync_once
from service.settings import load_settings
from tests.conftest import SimHandle

# Each entity's table and the columns a change of it shows in.
TABLES = {
    "flows": (
        "flow_id",
        "state, title, created_at, participation_start, participation_end, marking_start, marking_end",
    ),
    "participants": ("flow_id, participant_id", "user_id, number, activated, group_id, submission_id"),
    "grades": ("flow_id, participant_id", "version_key"),
}


def snapshot(db: Path) -> dict[str, dict[Any, Any]]:
    """Each entity of the mirror: key -> values, read straight from the tables."""
    table = {"flows": "flows", "participants": "participants", "grades": "assessments"}
    with sqlite3.connect(db) as conn:
        return {
            entity: {
                tuple(row[: key.count(",") + 1]): row[key.count(",") + 1 :]
                for row in conn.execute(f"SELECT {key}, {values} FROM {table[entity]}")  # noqa: S608 - constants
            }
            for entity, (key, values) in TABLES.items()
        }


def diff(before: dict[Any, Any], after: dict[Any, Any]) -> dict[str, int]:
    """What went from `before` to `after`: keys added, values changed, keys removed."""
    return {
        "added": len(after.keys() - before.keys()),
        "changed": sum(1 for k in after.keys() & before.keys() if after[k] != before[k]),
        "removed": len(before.keys() - after.keys()),
    }


async def runs_json(db: Path, limit: int = 20) -> list[dict[str, Any]]:
    """What `wiseflow-sync runs --format json --limit N` prints (its two parts, in this event loop)."""
    out = io.StringIO()
    write_runs(await read_runs(str(db), limit), "json", out, time.time())
    result: list[dict[str, Any]] = json.loads(out.getvalue())
    return result


def sim_env(sim: SimHandle, db: Path) -> dict[str, str]:
    """A service's environment pointed at the simulator and its fake SIS."""
    return {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": "demo-client",
        "WISEFLOW_CLIENT_SECRET": "demo-secret",
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "SYNC_DATABASE": str(db),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_RATE_PER_SECOND": "200",
        "SYNC_RATE_PER_MINUTE": "5000",
    }


def outbox_rows(db: Path) -> int:
    """Grade versions ever queued for the SIS (delivered rows stay)."""
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return int(count)


async def test_two_runs_count_what_the_mirror_gained_changed_and_lost(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """A first sync adds the world; after grade, state and hand-in changes a full sync counts exactly the
    rows that changed; requests are the simulator's journal for each run; newest first."""
    db = tmp_path / "runs.sqlite3"
    settings = load_settings(sim_env(simulator, db))
    mirrors: list[dict[str, dict[Any, Any]]] = [{entity: {} for entity in TABLES}]  # no database yet
    queued, requests = [0], []
    for full in (False, True):
        await simulator.clear_journal()
        assert await sync_once(settings, io.StringIO(), full=full) == 0
        requests.append(len(await simulator.journal()))
        mirrors.append(snapshot(db))
        queued.append(outbox_rows(db))
        await simulator.advance({"grade_changes": 4, "state_changes": 2, "paper_submissions": 2})

    second, first = await runs_json(db)
    for i, run in enumerate((first, second)):
        assert (run["command"], run["outcome"], run["error"], run["requests"]) == (
            "sync",
            "ok",
            None,
            requests[i],
        )
        expected = {entity: diff(mirrors[i][entity], mirrors[i + 1][entity]) for entity in TABLES}
        expected["grades"]["queued"] = queued[i + 1] - queued[i]
        assert run["counts"] == expected
    assert first["counts"]["grades"]["added"] > 0
    assert second["counts"]["grades"]["changed"] > 0
    assert second["counts"]["participants"]["changed"] > 0  # a hand-in gives a participant its submission
    assert [r["id"] for r in await runs_json(db, limit=1)] == [second["id"]] != [first["id"]]


async def test_status_shows_the_last_run_as_runs_does(simulator: SimHandle, tmp_path: Path) -> None:
    """`/status` has `last_run` null before any run, then the newest run, as `runs --format json` shows it
    (a run of another process on the database included)."""
    db = tmp_path / "status.sqlite3"
    settings = load_settings(sim_env(simulator, db))
    async with TestClient(TestServer(build_app(settings, start=False), host="127.0.0.1")) as client:
        async with client.get("/status") as response:
            assert (await response.json())["last_run"] is None
        assert await sync_once(settings, io.StringIO()) == 0
        async with client.get("/status") as response:
            last = (await response.json())["last_run"]
    assert last == (await runs_json(db))[0]
    assert (last["command"], last["outcome"], last["finished_at"] is not None) == ("sync", "ok", True)


async def make_database(db: Path) -> None:
    """A migrated database holding two finished runs (an ok `sync`, a paused `run`)."""
    store = await Store.open(db)
    try:
        await store.db.execute(
            "INSERT INTO sync_runs (started_at, ended_at, outcome, api_calls, command, flows_added,"
            " participants_added, participants_removed, grades_added, grades_changed, grades_queued)"
            " VALUES (1700000000, 1700000012.5, 'ok', 87, 'sync', 3, 40, 1, 40, 2, 42)"
        )
        await store.db.execute(
            "INSERT INTO sync_runs (started_at, ended_at, outcome, reason, api_calls, command)"
            " VALUES (1700000100, 1700000400, 'paused', 'ApiUnavailable: 503', 5, 'run')"
        )
    finally:
        await store.close()


def test_the_text_table_lists_runs_newest_first_with_their_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row per run under a header: command, outcome, requests, `+added ~changed -removed` per entity."""
    db = tmp_path / "table.sqlite3"
    asyncio.run(make_database(db))
    assert main(["runs"], {"SYNC_DATABASE": str(db)}) == 0
    header, newest, oldest = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["ID", "COMMAND", "STARTED"]
    assert newest.split() == [
        *("2", "run", "2023-11-14", "22:15:00", "5", "min", "00", "s", "paused", "5"),
        *("+0", "~0", "-0", "+0", "~0", "-0", "+0", "~0", "-0", "0", "ApiUnavailable:", "503"),
    ]
    assert oldest.split() == [
        *("1", "sync", "2023-11-14", "22:13:20", "12.5", "s", "ok", "87"),
        *("+3", "~0", "-0", "+40", "~0", "-1", "+40", "~2", "-0", "42"),
    ]


def test_runs_never_creates_migrates_or_writes_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No file: one line, exit 2, none created; an older schema: one line, exit 2, left as it was."""
    missing = tmp_path / "missing.sqlite3"
    assert main(["runs"], {"SYNC_DATABASE": str(missing)}) == 2
    assert "SYNC_DATABASE" in one_line(capsys.readouterr().err)
    assert not missing.exists()
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE t (a)")
        conn.execute("PRAGMA user_version = 9")
    before = old.read_bytes()
    assert main(["runs", "--format", "json"], {"SYNC_DATABASE": str(old)}) == 2
    assert "schema version 9" in one_line(capsys.readouterr().err)
    assert old.read_bytes() == before


def test_an_empty_history_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No run yet: one line in text, an empty list in JSON."""
    db = tmp_path / "empty.sqlite3"

    async def create() -> None:
        await (await Store.open(db)).close()

    asyncio.run(create())
    env = {"SYNC_DATABASE": str(db)}
    assert main(["runs"], env) == 0
    assert capsys.readouterr().out == "no sync runs recorded yet\n"
    assert main(["runs", "--format", "json"], env) == 0
    assert json.loads(capsys.readouterr().out) == []


def one_line(text: str) -> str:
    """The text is exactly one line; return it."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def test_the_migration_renames_past_pauses_and_keeps_dead_processes_interrupted(tmp_path: Path) -> None:
    """Runs recorded before the history: a pause-ended run becomes `paused`, a dead process's stays
    `interrupted`; their command is unknown (null) and their counts zero."""
    path = tmp_path / "v9.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("".join(MIGRATIONS[:9]) + "PRAGMA user_version = 9;")
        db.executemany(
            "INSERT INTO sync_runs (started_at, ended_at, outcome, reason, api_calls) VALUES (?, ?, ?, ?, 3)",
            [
                (1.0, 2.0, "ok", None),
                (3.0, 4.0, "interrupted", "CircuitOpen: maintenance"),
                (5.0, 6.0, "interrupted", "process ended mid-run"),
            ],
        )
    db.close()
    await (await Store.open(path)).close()
    dead, paused, ok = await runs_json(path)
    assert [ok["outcome"], paused["outcome"], dead["outcome"]] == ["ok", "paused", "interrupted"]
    assert (ok["command"], ok["requests"], ok["counts"]["grades"]) == (
        None,
        3,
        {"added": 0, "changed": 0, "removed": 0, "queued": 0},
    )


async def test_the_service_records_its_runs_under_the_command_that_built_it(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """`demo` builds the service app as `demo` (`run` by default): its poll loop's runs are recorded so."""
    db = tmp_path / "demo.sqlite3"
    app = build_app(load_settings(sim_env(simulator, db)), start=False, command="demo")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        summary = await app[SERVICE].runner.run()
        async with client.get("/status") as response:
            last = (await response.json())["last_run"]
    assert (last["id"], last["command"], last["outcome"]) == (summary.run_id, "demo", "ok")
