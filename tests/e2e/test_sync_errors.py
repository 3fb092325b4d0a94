"""`sync --once` and `export grades` on databases they cannot use: one clear line and exit 2, no traceback."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from service.cli import main

API_ENV = {
    "WISEFLOW_API_URL": "http://127.0.0.1:9/v1",
    "WISEFLOW_CLIENT_ID": "demo-client",
    "WISEFLOW_CLIENT_SECRET": "demo-secret",
    "LOG_LEVEL": "WARNING",
}


def not_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("these are notes, not a database\n" * 20)
    return path


def newer_schema(tmp_path: Path) -> Path:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    return path


@pytest.mark.parametrize("make", [not_sqlite, newer_schema])
@pytest.mark.parametrize("argv", [["sync", "--once"], ["export", "grades"]])
def test_an_unusable_database_is_one_line_and_exit_2(
    make: object, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not SQLite, or has a newer schema: exit 2 (as from `run`), one line naming the problem."""
    path = make(tmp_path)  # type: ignore[operator]
    before = path.read_bytes()
    code = main(argv, {**API_ENV, "SYNC_DATABASE": str(path)})
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "database" in lines[0]
    assert "Traceback" not in captured.err
    assert before == path.read_bytes()  # nothing was written into the foreign file


def test_a_database_in_a_missing_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SYNC_DATABASE in a directory that does not exist: `sync --once` names it in one line, exit 2."""
    path = tmp_path / "nowhere" / "sync.sqlite3"
    code = main(["sync", "--once"], {**API_ENV, "SYNC_DATABASE": str(path)})
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert str(path) in err[0]


def test_export_of_a_missing_database_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export grades` without a database: exit 2, one line naming SYNC_DATABASE, and no file left behind."""
    path = tmp_path / "absent.sqlite3"
    code = main(["export", "grades", "--format", "csv"], {"SYNC_DATABASE": str(path)})
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "SYNC_DATABASE: no database file" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_export_with_an_unknown_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format xml` is refused by the parser: exit 2, before any database is touched."""
    with pytest.raises(SystemExit) as exited:
        main(["export", "grades", "--format", "xml"], {"SYNC_DATABASE": str(tmp_path / "x.sqlite3")})
    assert exited.value.code == 2
    assert "--format" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An immutable database file (read-only even for root): `sync --once` fails with one line naming it."""
    path = tmp_path / "ro.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    chattr = shutil.which("chattr")
    # S603: fixed arguments and a path this test made.
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False).returncode:  # noqa: S603
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        code = main(["sync", "--once"], {**API_ENV, "SYNC_DATABASE": str(path)})
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)  # noqa: S603
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert str(path) in err[0]
    assert "readonly" in err[0]
