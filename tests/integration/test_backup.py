"""`wiseflow-sync backup PATH` on a live database: a consistent copy while webhooks keep committing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.store.migrations import LATEST_VERSION
from service.adapters.store.unit import SqliteUnitOfWork
from service.cli import main
from service.core.webhook_events import WebhookEvent

NOW = 1_700_000_000.0


def event(sequence: int) -> WebhookEvent:
    """A FINAL_GRADE event."""
    return WebhookEvent(f"d-{sequence}", sequence, "FINAL_GRADE", int(NOW), sequence % 7, 1)


def sequences(path: Path) -> list[int]:
    """The inbox sequences stored in the database file at `path` (test inspection only)."""
    with sqlite3.connect(path) as db:
        return [int(row[0]) for row in db.execute("SELECT sequence FROM inbox ORDER BY sequence")]


async def test_backup_while_webhooks_commit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The copy passes integrity_check, is migrated, and holds a gap-free prefix of the concurrent commits."""
    database = tmp_path / "live.sqlite3"
    store = await Store.open(database)
    inbox = Inbox(store)
    for sequence in range(1, 2001):  # enough pages that the copy takes a while
        await inbox.record(event(sequence), b"x" * 500, "pending", NOW)
    stop = asyncio.Event()
    committed: list[int] = []
    goal, reached = [5], asyncio.Event()

    async def webhooks() -> None:
        sequence = 100_000
        while not stop.is_set():
            sequence += 1
            await inbox.record(event(sequence), b"y" * 100, "pending", NOW)
            committed.append(sequence)
            if len(committed) >= goal[0]:
                reached.set()

    writer = asyncio.create_task(webhooks())
    try:
        await reached.wait()  # writes are under way before the backup starts
        env = {"SYNC_DATABASE": str(database)}
        code = await asyncio.to_thread(main, ["backup", str(tmp_path / "copy.sqlite3")], env)
        goal[0] = len(committed) + 5
        reached.clear()
        await reached.wait()  # and they go on after it: the service was never blocked
    finally:
        stop.set()
        await writer
        await store.close()
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"backup written: {tmp_path / 'copy.sqlite3'}")
    assert f"schema version {LATEST_VERSION}" in out
    with sqlite3.connect(tmp_path / "copy.sqlite3") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copied = sequences(tmp_path / "copy.sqlite3")
    tail = [s for s in copied if s > 100_000]
    assert copied[:2000] == list(range(1, 2001))
    assert tail == committed[: len(tail)]  # a prefix of the commits: the database as of one commit
    assert len(tail) < len(committed)
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob(".*.partial")))


async def test_a_backup_restores_into_a_working_store(tmp_path: Path) -> None:
    """Restore = put the copy in place of SYNC_DATABASE: the store opens it and finds every row."""
    database = tmp_path / "db.sqlite3"
    store = await Store.open(database)
    await Inbox(store).record(event(1), b"{}", "pending", NOW)
    assert main(["backup", str(tmp_path / "b.sqlite3")], {"SYNC_DATABASE": str(database)}) == 0
    await store.close()
    restored = tmp_path / "restored.sqlite3"
    restored.write_bytes((tmp_path / "b.sqlite3").read_bytes())
    store = await Store.open(restored)
    try:
        async with SqliteUnitOfWork(store).read() as unit:
            assert [row.sequence for row in await unit.inbox.pending(NOW)] == [1]
        await store.ping()
    finally:
        await store.close()


def test_backup_refuses_to_overwrite_and_needs_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing target is never overwritten (exit 1); no database is a configuration error (exit 2)."""
    database = tmp_path / "db.sqlite3"
    asyncio.run(_create(database))
    target = tmp_path / "exists.sqlite3"
    target.write_bytes(b"keep me")
    assert main(["backup", str(target)], {"SYNC_DATABASE": str(database)}) == 1
    assert target.read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "x.sqlite3")], {"SYNC_DATABASE": str(tmp_path / "none")}) == 2
    assert "SYNC_DATABASE" in capsys.readouterr().err


async def _create(path: Path) -> None:
    store = await Store.open(path)
    await store.close()
