"""The unit of work on SQLite (`UnitOfWork`): each transaction or read is a `SqliteUnit` of repositories.

    uow = SqliteUnitOfWork(store)
    async with uow.transaction() as unit:      # BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception
        await unit.grades.write(changed, now)
        await unit.outbox.enqueue(changed, now)
    async with uow.read() as unit:             # the read-only connection: committed rows only
        items = await unit.outbox.due(now)

The repositories hold their SQL (mirror.py, grades.py, outbox.py, inbox_queue.py, runs.py, figures.py for
the reports, retention.py for the retention loop); a driver error comes out as `StoreError`
(`Store.transaction`, `Store.read`), so the loops never see a connection, a SQL string or sqlite3.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite

from service.adapters.store.connection import Store
from service.adapters.store.figures import SqliteFigures
from service.adapters.store.files import lock_path
from service.adapters.store.grades import SqliteGrades
from service.adapters.store.inbox_queue import SqliteInbox
from service.adapters.store.mirror import SqliteFlows
from service.adapters.store.outbox import SqliteOutbox
from service.adapters.store.retention import SqliteRetention
from service.adapters.store.runs import SqliteCheckpoints, SqliteRuns


class SqliteUnit:
    """The repositories of one transaction (or read), all on its connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.flows = SqliteFlows(db)
        self.grades = SqliteGrades(db)
        self.outbox = SqliteOutbox(db)
        self.inbox = SqliteInbox(db)
        self.checkpoints = SqliteCheckpoints(db)
        self.runs = SqliteRuns(db)
        self.figures = SqliteFigures(db)  # the reports' figures (`certify`): not a port the loops use
        self.retention = SqliteRetention(db)  # the retention loop's, on SQLite only: not on the loops' port


class SqliteUnitOfWork:
    """The `UnitOfWork` port on a `Store`: the one way the sync loops reach the database."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteUnit]:
        """One `BEGIN IMMEDIATE ... COMMIT` (a nested call of the same task joins the outer one)."""
        async with self._store.transaction() as db:
            yield SqliteUnit(db)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteUnit]:
        """Reads of committed rows on the read-only connection, beside the writer (no write succeeds)."""
        async with self._store.read() as db:
            yield SqliteUnit(db)

    @asynccontextmanager
    async def exclusive(self, name: str, poll: float = 0.2) -> AsyncIterator[None]:
        """Hold a lock shared by every process using this database (e.g. "sync": runs never overlap).

        An flock on `<database>.<name>.lock` beside the database's real path (every spelling of the path
        shares it): the kernel releases it when its holder dies, even by kill -9, so a crashed run never
        blocks the next one. Waits (polling) while another process holds it.
        """
        path = self._store.path
        if path == ":memory:":
            yield
            return
        fd = os.open(lock_path(path, name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(poll)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
