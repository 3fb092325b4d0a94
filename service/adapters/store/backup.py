"""A consistent copy of the database while the service keeps writing: SQLite's online backup API.

The copy is taken in one step (`pages=-1`) inside one read transaction. In WAL mode a reader never blocks
the writer, so the service goes on committing webhooks meanwhile, and the copy is the database as of one
commit. (A page-by-page backup would restart each time another connection wrote, and under a steady
stream of webhooks might never finish.) The copy is written beside the target and renamed into place, so
a crash never leaves a half-written backup under the final name.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from service.adapters.store.connection import BUSY_TIMEOUT_MS, StoreError


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What was written: where, how many bytes, and the copy's schema version."""

    path: Path
    size: int
    schema_version: int


def backup_database(source: str, target: Path) -> BackupResult:
    """Copy `source` to `target` (which must not exist) and check the copy; `StoreError` on failure."""
    if target.exists():
        raise StoreError(f"backup target {target} exists: choose a new path (backups are never overwritten)")
    partial = target.with_name(f".{target.name}.partial")
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
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
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"backup of {source} to {target} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(target, target.stat().st_size, int(version))


def _require_intact(check: str, source: str) -> None:
    if check != "ok":
        raise StoreError(f"backup of {source} failed its integrity check: {check}")
