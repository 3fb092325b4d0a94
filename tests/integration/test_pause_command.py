"""`wiseflow-sync pause show|clear` on a real SQLite file: what is saved, how long is left, lifting it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from service.adapters.store import Store
from service.adapters.store.pause import SqlitePauseStore
from service.cli import main
from service.core.clock import SystemClock


async def _cli(argv: list[str], db: Path) -> int:
    # The CLI runs its own event loop: call it from a worker thread of this test's loop.
    return await asyncio.to_thread(main, argv, {"SYNC_DATABASE": str(db)})


async def _save(db: Path, seconds: float, reason: str) -> None:
    store = await Store.open(db)
    try:
        await SqlitePauseStore(store, SystemClock()).save(time.time() + seconds, reason)
    finally:
        await store.close()


async def test_show_prints_until_when_why_and_how_long_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A saved 120 s pause: active, its reason, about 120 s left; text and JSON agree."""
    db = tmp_path / "db.sqlite3"
    await _save(db, 120.0, "503 with Retry-After on GET /license/info")
    assert await _cli(["pause", "show"], db) == 0
    text = capsys.readouterr().out
    assert await _cli(["pause", "show", "--format", "json"], db) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert text.startswith("paused until ")
    assert "503 with Retry-After on GET /license/info" in text
    assert (doc["active"], doc["reason"]) == (True, "503 with Retry-After on GET /license/info")
    assert 100.0 < doc["remaining"] <= 120.0


async def test_clear_lifts_the_pause_so_the_next_process_does_not_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `pause clear` nothing is saved: show says so, and a second clear has nothing to lift."""
    db = tmp_path / "db.sqlite3"
    await _save(db, 3600.0, "429 on POST /oauth2/token")
    assert await _cli(["pause", "clear"], db) == 0
    assert await _cli(["pause", "show"], db) == 0
    assert await _cli(["pause", "clear"], db) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lifted the pause until ")
    assert out[2:] == ["no pause saved", "no pause in force; nothing to lift"]


async def test_an_ended_pause_is_shown_as_not_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pause whose time has passed is reported as over, not as a wait."""
    db = tmp_path / "db.sqlite3"
    await _save(db, -5.0, "429 on GET /flow/{id}")
    assert await _cli(["pause", "show", "--format", "json"], db) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert (doc["active"], doc["remaining"]) == (False, 0.0)


@pytest.mark.parametrize("action", ["show", "clear"])
async def test_a_missing_database_is_named_like_the_other_reading_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """No database file: one line naming SYNC_DATABASE, exit 2, and no file is created."""
    absent = tmp_path / "absent.sqlite3"
    assert await _cli(["pause", action], absent) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "SYNC_DATABASE" in err[0]
    assert not absent.exists()
