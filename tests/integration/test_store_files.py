"""The database's files: private modes, odd folder names, planted symlinks, one lock per real path."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters.store import Store, StoreError
from service.adapters.store.inbox import Inbox
from service.cli import main
from service.core.webhook_events import WebhookEvent

NOW = 1_700_000_000.0


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common umask 022, so files come out 0644 unless the code narrows them."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(os.lstat(path).st_mode)


async def database_with_rows(path: Path, count: int = 3) -> None:
    """A migrated database at `path` holding `count` inbox events."""
    store = await Store.open(path)
    try:
        for sequence in range(1, count + 1):
            event = WebhookEvent(f"d-{sequence}", sequence, "FINAL_GRADE", int(NOW), 1, 1)
            await Inbox(store).record(event, b"{}", "pending", NOW)
    finally:
        await store.close()


def inbox_count(path: Path) -> int:
    """The number of inbox rows in the database file at `path` (test inspection)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM inbox").fetchone()[0])


@pytest.mark.usefixtures("loose_umask")
async def test_the_database_and_its_sidecars_are_private(tmp_path: Path) -> None:
    """A new database, its -wal and -shm are 0600 under umask 022: grades readable by the owner alone."""
    database = tmp_path / "db.sqlite3"
    store = await Store.open(database)
    try:
        await Inbox(store).record(WebhookEvent("d", 1, "FINAL_GRADE", int(NOW), 1, 1), b"{}", "pending", NOW)
        sidecars = [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)
        assert [mode(p) for p in (database, *sidecars)] == [0o600, 0o600, 0o600]
    finally:
        await store.close()


@pytest.mark.usefixtures("loose_umask")
async def test_an_existing_world_readable_database_is_narrowed_at_open(tmp_path: Path) -> None:
    """A database an older version left 0644 is 0600 once the store opened it."""
    database = tmp_path / "db.sqlite3"
    await database_with_rows(database)
    database.chmod(0o644)
    store = await Store.open(database)
    await store.close()
    assert mode(database) == 0o600


@pytest.mark.usefixtures("loose_umask")
@pytest.mark.parametrize("folder", ["h#x", "q?x", "p%41x", "sp ace"])
async def test_backup_copies_the_database_in_a_folder_with_uri_characters(
    tmp_path: Path, folder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`#`, `?` and `%` in the path are escaped: the copy is the database itself, 0600, not a stray file."""
    (tmp_path / folder).mkdir()
    database = tmp_path / folder / "db.sqlite3"
    await database_with_rows(database)
    target = tmp_path / folder / "copy.sqlite3"
    assert main(["backup", str(target)], {"SYNC_DATABASE": str(database)}) == 0
    assert "backup written" in capsys.readouterr().out
    assert inbox_count(target) == 3
    assert mode(target) == 0o600
    assert sorted(p.name for p in (tmp_path / folder).iterdir() if "partial" in p.name) == []


async def test_backup_never_writes_through_a_planted_partial_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planted `.NAME.partial -> victim` symlink: the victim keeps its bytes, the backup is right."""
    database = tmp_path / "db.sqlite3"
    await database_with_rows(database)
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (shared / ".copy.sqlite3.partial").symlink_to(victim)
    assert main(["backup", str(shared / "copy.sqlite3")], {"SYNC_DATABASE": str(database)}) == 0
    capsys.readouterr()
    assert victim.read_bytes() == b"not yours"
    assert inbox_count(shared / "copy.sqlite3") == 3


async def test_backup_never_replaces_a_symlink_at_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dangling symlink under the target's name counts as taken: exit 1, nothing created behind it."""
    database = tmp_path / "db.sqlite3"
    await database_with_rows(database)
    target = tmp_path / "copy.sqlite3"
    target.symlink_to(tmp_path / "elsewhere")
    assert main(["backup", str(target)], {"SYNC_DATABASE": str(database)}) == 1
    assert "exists" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_two_spellings_of_one_database_share_its_run_lock(tmp_path: Path) -> None:
    """`dir/db`, `dir/./sub/../db` and a symlink to it are one database: a second holder is refused."""
    (tmp_path / "sub").mkdir()
    database = tmp_path / "db.sqlite3"
    link = tmp_path / "link.sqlite3"
    link.symlink_to(database)
    with Store.hold(str(database), "run", "first"):
        for spelling in (f"{tmp_path}/./sub/../db.sqlite3", str(link)):
            with pytest.raises(StoreError, match="first"), Store.hold(spelling, "run", "second"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")) == ["db.sqlite3.run.lock"]
