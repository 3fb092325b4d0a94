"""A consistent copy of the database while the service keeps writing: SQLite's online backup API.

The copy is taken in one step (`pages=-1`) inside one read transaction. In WAL mode a reader never blocks
the writer, so the service goes on committing webhooks meanwhile, and the copy is the database as of one
commit. (A page-by-page backup would restart each time another connection wrote, and under a steady
stream of webhooks might never finish.) The copy is written beside the target and linked into place, so
a crash never leaves a half-written backup under the final name.

Backups are often written to shared folders. The temporary file is created by `mkstemp` (a random name,
`O_EXCL`, mode 0600), so a symlink planted under a predictable name is never written through, and the copy
of every grade is readable by its owner alone. `os.link` puts it under the final name only if that name is
still free, so a file (or link) created there meanwhile is never overwritten.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from service.adapters.store.connection import BUSY_TIMEOUT_MS, StoreError
from service.adapters.store.files import sqlite_uri

# Filesystems without hard links (some network and FUSE mounts): there the copy is renamed into place.
_NO_LINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What was written: where, how many bytes, and the copy's schema version."""

    path: Path
    size: int
    schema_version: int


def backup_database(source: str, target: Path) -> BackupResult:
    """Copy `source` to `target` (which must not exist) and check the copy; `StoreError` on failure."""
    if os.path.lexists(target):
        raise _taken(target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise StoreError(f"backup of {source} to {target} failed: {exc.strerror or exc}") from exc
    os.close(fd)
    partial = Path(name)
    try:
        version = _copy(source, partial)
        _place(partial, target)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"backup of {source} to {target} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, version)


def _copy(source: str, partial: Path) -> int:
    """The online backup of `source` into the empty `partial`, checked; the copy's schema version."""
    src = sqlite3.connect(sqlite_uri(source, "ro"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=-1)
            # A self-contained file: no -wal beside it when it is copied elsewhere or restored.
            dst.execute("PRAGMA journal_mode=DELETE")
            (check,) = dst.execute("PRAGMA integrity_check").fetchone()
            (version,) = dst.execute("PRAGMA user_version").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    _require_intact(check, source)
    return int(version)


def _place(partial: Path, target: Path) -> None:
    """Give `partial` the name `target`, failing (never overwriting) when `target` appeared meanwhile."""
    try:
        os.link(partial, target, follow_symlinks=False)
    except FileExistsError:
        raise _taken(target) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.replace(partial, target)


def _taken(target: Path) -> StoreError:
    return StoreError(f"backup target {target} exists: choose a new path (backups are never overwritten)")


def _require_intact(check: str, source: str) -> None:
    if check != "ok":
        raise StoreError(f"backup of {source} failed its integrity check: {check}")
