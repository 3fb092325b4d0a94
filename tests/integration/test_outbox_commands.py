"""`outbox dead-letters`, `outbox replay` and the migration that queues grades mirrored without a sink."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.migrations import MIGRATIONS
from service.adapters.store.unit import SqliteUnit, SqliteUnitOfWork
from service.cli import main
from service.core.records import GradeVersion

NOW = 1_700_000_000.0


async def _database(path: Path) -> dict[str, int]:
    """Participant 1: a dead version then a newer delivered one; participant 2: one dead version."""
    store = await Store.open(path)
    try:
        async with store.transaction() as db:
            await SqliteUnit(db).outbox.enqueue(
                [GradeVersion(1, 1, "F", None, 1), GradeVersion(1, 2, "C", None, 1)], NOW
            )
        async with store.transaction() as db:
            outbox = SqliteUnit(db).outbox
            await outbox.enqueue([GradeVersion(1, 1, "E", None, 2)], NOW)
            one = "SELECT {}(id) FROM outbox WHERE participant_id = 1"
            ids = {
                "old": int(await fetch_value(db, one.format("min"))),
                "new": int(await fetch_value(db, one.format("max"))),
                "two": int(await fetch_value(db, "SELECT id FROM outbox WHERE participant_id = 2")),
            }
            await outbox.mark_dead(ids["old"], "sink refused the delivery (status=422)")
            await outbox.mark_delivered(ids["new"], NOW)
            await outbox.mark_dead(ids["two"], "sink refused the delivery (status=400)")
    finally:
        await store.close()
    return ids


async def _status(path: Path, row: int) -> str:
    store = await Store.open(path)
    try:
        return str(await fetch_value(store.db, "SELECT status FROM outbox WHERE id = ?", (row,)))
    finally:
        await store.close()


async def _cli(argv: list[str], db: Path) -> int:
    # The CLI runs its own event loop: call it from a worker thread of this test's loop.
    return await asyncio.to_thread(main, argv, {"SYNC_DATABASE": str(db)})


async def test_dead_letters_lists_refused_grades_without_the_grade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both dead rows are listed with their error, the delivered one is not, and no grade is shown."""
    db = tmp_path / "db.sqlite3"
    ids = await _database(db)
    assert await _cli(["outbox", "dead-letters"], db) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [str(ids["old"]), str(ids["two"])]
    assert "status=422" in lines[1]
    assert not any(f" {grade} " in line for line in lines for grade in ("F", "E", "C"))
    assert await _cli(["outbox", "dead-letters", "--format", "json"], db) == 0
    assert '"participantId": 2' in capsys.readouterr().out


async def test_replay_requeues_only_what_no_newer_grade_supersedes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Participant 2's dead row is re-queued; participant 1's stays dead (its newer grade was delivered:
    replaying would put the older one in the SIS last); unknown IDs exit 1; a repeat is harmless."""
    db = tmp_path / "db.sqlite3"
    ids = await _database(db)
    assert await _cli(["outbox", "replay", "--all"], db) == 0
    assert (await _status(db, ids["two"]), await _status(db, ids["old"])) == ("pending", "dead")
    assert await _cli(["outbox", "replay", str(ids["two"])], db) == 0
    assert await _cli(["outbox", "replay", "999"], db) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "re-queued 1 grade delivery(ies); the deliverer sends them next",
        "left 1 dead: a newer grade of the same participant supersedes it",
        f"row {ids['two']} is pending: nothing to replay",
    ]


async def test_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    """Without a database file the command exits 2 naming SYNC_DATABASE (it never creates one)."""
    assert await _cli(["outbox", "dead-letters"], tmp_path / "absent.sqlite3") == 2
    assert not (tmp_path / "absent.sqlite3").exists()


async def test_grades_mirrored_without_a_sink_are_queued_by_the_migration(tmp_path: Path) -> None:
    """A database of the first schema whose grades never entered the outbox (no sink was set) gets one row
    per graded participant, under the version's own key, when it is opened; ungraded ones get none."""
    path = tmp_path / "v1.sqlite3"
    graded = GradeVersion(4, 41, "B", None, 1700)
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO flows (flow_id, state, first_seen_at, seen_at, updated_at) VALUES (4, 'x', 0, 0, 0)"
        )
        db.executemany(
            "INSERT INTO assessments (flow_id, participant_id, grade, admin_grade, grade_date, version_key,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, 5)",
            [(4, 41, "B", None, 1700, graded.idempotency_key), (4, 42, None, None, None, "k-ungraded")],
        )
    db.close()
    store = await Store.open(path)
    try:
        async with SqliteUnitOfWork(store).read() as unit:
            items = await unit.outbox.due(NOW)
    finally:
        await store.close()
    assert [(i.idempotency_key, i.payload) for i in items] == [(graded.idempotency_key, graded.payload())]
