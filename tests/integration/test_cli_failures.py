"""Every CLI failure is one line and an exit code: a locked database, a huge id, a closed pipe, old backups.

The locked-database test runs each command that opens SYNC_DATABASE as its own process (as an operator
would, while a `sqlite3` shell or a long write holds the lock); `run`, `simulate`, `demo`, `preflight` and
`webhooks ensure` are not among them: `run` is a service (its readiness reports an unwritable database),
and the others never open SYNC_DATABASE.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.migrations import LATEST_VERSION, MIGRATIONS
from service.cli import main
from tests.conftest import SimHandle
from tests.waiting import PROCESS_DEADLINE

NOW = 1_700_000_000.0
READ_ONLY_COMMANDS = (
    ["export", "grades"],
    ["export", "grades", "--format", "csv"],
    ["pause", "show"],
    ["pause", "show", "--format", "json"],
    ["diagnose", "abc"],
    ["certify", "--format", "json"],
    ["inbox", "dead-letters"],
    ["outbox", "dead-letters", "--format", "json"],
    ["runs"],
    ["runs", "--format", "json", "--limit", "5"],
)


def cli_env(database: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for the CLI in a subprocess: the database, quiet logs, no inherited settings."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")}
    return {**keep, "SYNC_DATABASE": str(database), "LOG_LEVEL": "WARNING", **extra}


async def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """`python -m service ARGS` to completion: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def migrated(path: Path) -> Path:
    """A database at the latest schema (WAL), created by the store itself."""
    store = await Store.open(path)
    await store.close()
    return path


def add_dead_letters(path: Path, count: int) -> None:
    """`count` dead outbox rows (test setup straight into the file)."""
    rows = [
        (f"key-{i}", 1000 + i, 100_000 + i, '{"grade":"7"}', "dead", 5, NOW, "refused (status=422)")
        for i in range(count)
    ]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO outbox (idempotency_key, flow_id, participant_id, payload, status, attempts,"
            " created_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()


@pytest.fixture
async def locked(tmp_path: Path) -> AsyncIterator[Path]:
    """A migrated database whose write lock another connection holds for the whole test."""
    database = await migrated(tmp_path / "db.sqlite3")
    add_dead_letters(database, 2)
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield database
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_every_command_on_a_locked_database_is_one_line_and_an_exit_code(
    locked: Path, simulator: SimHandle, tmp_path: Path
) -> None:
    """Writers wait out the busy timeout, then exit 75 with one line; readers read beside the lock (WAL)."""
    api = {"WISEFLOW_API_URL": simulator.api_url, "WISEFLOW_API_KEY": simulator.config.api_key}
    writers = (
        ("pause", "clear"),
        ("inbox", "replay", "--all"),
        ("inbox", "replay", "1"),
        ("outbox", "replay", "--all"),
        ("outbox", "replay", "1"),
        ("sync", "--once"),
    )
    readers = {**{tuple(c): 0 for c in READ_ONLY_COMMANDS}, ("diagnose", "abc"): 1}
    readers[("backup", str(tmp_path / "copy.sqlite3"))] = 0
    commands = [list(c) for c in writers] + [list(c) for c in readers]
    results = await asyncio.gather(*(run_cli(c, cli_env(locked, **api)) for c in commands))
    outcomes = {tuple(c): r for c, r in zip(commands, results, strict=True)}
    for command, (_, _, err) in outcomes.items():
        assert "Traceback" not in err, command
        assert len(err.splitlines()) <= 1, (command, err)
    assert {c: outcomes[c][0] for c in writers} == dict.fromkeys(writers, 75)
    assert all("locked by another process; try again" in outcomes[c][2] for c in writers)
    assert {c: outcomes[c][0] for c in readers} == readers


@pytest.mark.parametrize("command", ["inbox", "outbox"])
def test_a_replay_id_beyond_sqlite_integers_is_a_usage_error(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay 99999999999999999999999`: one line and exit 2, not an OverflowError from the binding."""
    database = asyncio.run(migrated(tmp_path / "db.sqlite3"))
    with pytest.raises(SystemExit) as info:
        main([command, "replay", "99999999999999999999999"], {"SYNC_DATABASE": str(database)})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "at most 9223372036854775807" in err


@pytest.mark.parametrize("args", [["outbox", "dead-letters"], ["export", "grades"]])
async def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    """`... | head -1`: exit 141 (128 + SIGPIPE) and nothing on stderr, not a BrokenPipeError traceback."""
    database = await migrated(tmp_path / "db.sqlite3")
    add_dead_letters(database, 3000)
    with sqlite3.connect(database) as db:  # and 3000 grades for export
        db.execute(
            "INSERT INTO flows (flow_id, state, first_seen_at, seen_at, updated_at) VALUES (1, 'X', 0, 0, 0)"
        )
        db.executemany(
            "INSERT INTO assessments (flow_id, participant_id, grade, version_key, updated_at)"
            " VALUES (1, ?, '7', ?, 0)",
            [(p, f"v-{p}") for p in range(3000)],
        )
    db.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, env=cli_env(database),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stdout.readline(), timeout=PROCESS_DEADLINE)
    proc.stdout.feed_eof()
    transport = proc._transport  # noqa: SLF001 - asyncio's only way to close our end of the child's stdout
    transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]
    err = await asyncio.wait_for(proc.stderr.read(), timeout=PROCESS_DEADLINE)
    assert (await proc.wait(), err.decode()) == (141, "")


def _backup_at_version(path: Path, version: int) -> None:
    """A backup-like file (rollback journal, no WAL) at schema `version`, with one journal row if it fits."""
    with sqlite3.connect(path, isolation_level=None) as db:
        for number in range(1, version + 1):
            db.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
    db.close()


@pytest.mark.parametrize("version", [LATEST_VERSION, LATEST_VERSION - 1, 1])
def test_read_only_commands_never_change_a_backup(
    tmp_path: Path, version: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointed at a backup (current or older schema), read-only commands leave its bytes, mtime and folder.

    An older schema is never migrated: a command that can read it answers; one that cannot says so in one
    line (exit 2).
    """
    folder = tmp_path / "backups"
    folder.mkdir()
    backup = folder / "copy.sqlite3"
    _backup_at_version(backup, version)
    before = (backup.read_bytes(), backup.stat().st_mtime_ns, sorted(p.name for p in folder.iterdir()))
    for command in READ_ONLY_COMMANDS:
        code = main(list(command), {"SYNC_DATABASE": str(backup)})
        err = capsys.readouterr().err
        assert len(err.splitlines()) <= (1 if code == 2 else 0), (command, err)
        if code == 2:
            assert "never migrate" in err, (command, err)
        else:
            assert code in (0, 1), command
    after = (backup.read_bytes(), backup.stat().st_mtime_ns, sorted(p.name for p in folder.iterdir()))
    assert after == before


@pytest.mark.parametrize("command", [["run"], ["sync", "--once"]])
def test_a_remote_sink_without_credentials_stops_the_commands_that_deliver(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` and `sync --once` refuse a non-loopback SYNC_SINK_URL with neither token nor secret: one line,
    exit 2, naming the variables and the opt-out; nothing is opened or sent."""
    env = {
        "WISEFLOW_API_KEY": "k",
        "SYNC_SINK_URL": "https://sis.example.org/grades",
        "SYNC_DATABASE": str(tmp_path / "db.sqlite3"),
    }
    assert main(command, env) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    for variable in ("SYNC_SINK_URL", "SYNC_SINK_TOKEN", "SYNC_SINK_SECRET", "SYNC_SINK_ALLOW_UNAUTHENTICATED"):
        assert variable in err
    assert not (tmp_path / "db.sqlite3").exists()


async def test_certify_asking_wiseflow_still_never_changes_a_backup(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """With credentials certify also reads the saved pause before `GET /webhooks`: read-only too, so a backup
    is neither switched to WAL, nor migrated, nor journalled into."""
    backup = tmp_path / "copy.sqlite3"
    _backup_at_version(backup, LATEST_VERSION)
    before = _file_state(backup)
    env = {
        "SYNC_DATABASE": str(backup),
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_API_KEY": simulator.config.api_key,
        "LOG_LEVEL": "ERROR",
    }
    assert await asyncio.to_thread(main, ["certify", "--format", "json"], env) == 0
    assert [r["path"] for r in await simulator.journal()] == ["/v1/webhooks"]  # it did ask WISEflow
    assert _file_state(backup) == before


def _file_state(path: Path) -> tuple[bytes, int, list[str]]:
    """The file's bytes and mtime, and the names in its folder (sidecars would show there)."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())
