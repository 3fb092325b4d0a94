"""The database's files on disk: private modes, escaped URIs, lock files on the real path, busy errors.

The database holds grades and webhook bodies, so it, its `-wal`/`-shm` sidecars, its backups and its lock
files are 0600: readable by the service's user alone, whatever the umask. SQLite creates the sidecars
with the mode of the database file, so creating that file 0600 (and narrowing an older, wider one) covers
them. A lock is keyed on the real path, so `./db.sqlite3`, `/data/db.sqlite3` and a symlink to it are one
lock, not three.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import Final

from service.errors import DatabaseBusy

PRIVATE: Final = 0o600
SIDECARS: Final = ("-wal", "-shm", "-journal")
# SQLite's result codes for "another connection holds the lock" (SQLITE_BUSY, SQLITE_LOCKED).
_BUSY_CODES: Final = frozenset({5, 6})


def sqlite_uri(path: str | Path, mode: str) -> str:
    """A `file:` URI for `path` with `?mode=` (`ro`, `rw`, `rwc`): `#`, `?` and `%` in names escaped."""
    return Path(path).absolute().as_uri() + f"?mode={mode}"


def lock_path(database: str | Path, name: str) -> str:
    """`<database>.<name>.lock` beside the database's real path (every spelling of it shares the lock)."""
    return f"{os.path.realpath(database)}.{name}.lock"


def make_private(database: str | Path) -> None:
    """Create `database` empty with mode 0600 if absent (never through a symlink); narrow existing files.

    The sidecars lie beside the real file (SQLite resolves symlinks). Narrowing is best effort: a file
    another user owns keeps its mode (chmod would fail), and SQLite opens it as before.
    """
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
        return
    real = os.path.realpath(database)
    for suffix in ("", *SIDECARS):
        with contextlib.suppress(OSError):
            info = os.lstat(real + suffix)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                os.chmod(real + suffix, stat.S_IMODE(info.st_mode) & PRIVATE)


def is_busy(exc: BaseException | None) -> bool:
    """True when `exc`, or an exception it was raised from, is SQLite's "database is locked"."""
    while exc is not None:
        if isinstance(exc, DatabaseBusy):
            return True
        if isinstance(exc, sqlite3.OperationalError) and (
            getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES or "database is locked" in str(exc)
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def busy_error(database: str | Path) -> DatabaseBusy:
    """The one error for a database another process keeps locked."""
    return DatabaseBusy(f"database {database} is locked by another process; try again")
