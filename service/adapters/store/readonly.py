"""The database opened for reading only, by the commands that report on it beside the service (`runs`).

Never created, migrated or written: the connection is SQLite's read-only mode, and a file whose schema is
not this program's is refused with one line rather than migrated by a command that only looks.
"""

from __future__ import annotations

import sqlite3

from service.adapters.store.connection import Store, _open_reader, schema_version
from service.adapters.store.migrations import LATEST_VERSION
from service.errors import StoreError


async def open_read_only(path: str) -> Store:
    """The existing database at `path` for reads (`Store.read()`); `StoreError` (one line) when it cannot be."""
    try:
        db = await _open_reader(path)
    except sqlite3.Error as exc:
        raise StoreError(f"database {path} cannot be read: {exc}") from exc
    try:
        version = await schema_version(db)
    except sqlite3.Error as exc:  # not a database, say
        await db.close()
        raise StoreError(f"database {path} cannot be read: {exc}") from exc
    if version != LATEST_VERSION:
        await db.close()
        raise StoreError(_schema_problem(path, version))
    return Store(db, path)


def _schema_problem(path: str, version: int) -> str:
    if version > LATEST_VERSION:
        return f"database {path} has schema version {version}, newer than this program ({LATEST_VERSION})"
    return (
        f"database {path} has schema version {version}, this program reads {LATEST_VERSION}: start the"
        " service (or `sync --once`) once to migrate it"
    )
