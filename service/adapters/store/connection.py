"""The SQLite store: one aiosqlite writer connection, one read-only reader, WAL, migrations.

Every write goes through `async with store.transaction():`, which holds an asyncio.Lock for the
transaction's whole life, so two tasks never interleave statements of different transactions on the one
connection. The connection runs in autocommit mode (`isolation_level=None`): the only transactions are
the explicit `BEGIN IMMEDIATE ... COMMIT` ones, taken before any read so no writer can be upgraded late
and hit SQLITE_BUSY mid-transaction.

Reads that are not part of a write (`async with store.read():`) go to a second, read-only connection:
WAL lets it read beside the writer, and it only ever sees committed rows, never another task's open
transaction on the writer connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar, cast

import aiosqlite

from service.adapters.store.files import busy_error, is_busy, lock_path, make_private, sqlite_uri
from service.adapters.store.migrations import LATEST_VERSION, apply_migrations
from service.errors import StoreError

__all__ = ["Store", "StoreError", "fetch_float", "fetch_int", "fetch_text", "fetch_value", "schema_version"]

T = TypeVar("T")

# 5 s: long enough to wait out another process's checkpoint, short enough for a readiness probe.
BUSY_TIMEOUT_MS = 5000


def run_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: object) -> T:
    """`fn(conn, *args)` between `BEGIN IMMEDIATE` and `COMMIT`, on the calling thread (the connection's).

    The same transaction as `Store.transaction()` (and so the same durability: WAL, synchronous=FULL),
    rolled back here on any failure so the connection is never left inside it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (e.g. disk full) can leave it open
            conn.execute("ROLLBACK")
        raise
    return result


class WriterTurn:
    """The writer connection while its lock is held: `run` executes a whole function on its thread.

    `fn` runs BEGIN, its statements and COMMIT (or ROLLBACK) itself, as one queued call: one hop to the
    thread and back instead of one per statement. aiosqlite has no public call for this; `_execute` is what
    its own methods use, kept here so the rest of the code never touches aiosqlite's internals. A cancelled
    caller leaves `fn` to finish on the thread (it commits or rolls back there); the thread runs calls in
    order.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(sqlite3_connection, *args)` on the connection's thread; its result."""
        call = cast(Callable[..., Awaitable[T]], self._db._execute)  # private aiosqlite API: see the class
        return await call(fn, self._db._conn, *args)  # private aiosqlite API: see the class


class Store:
    """The database of wiseflow-sync. Create with `await Store.open(path)`; close with `await close()`."""

    def __init__(
        self, db: aiosqlite.Connection, path: str = ":memory:", reader: aiosqlite.Connection | None = None
    ) -> None:
        self.db = db
        self.path = path
        self._reader = reader
        # One reader task at a time: SQLite keeps a read transaction open while any statement on the
        # connection is active, so a read started beside another task's open cursor would share that
        # cursor's older snapshot and miss what committed since (a delivered row read as still pending).
        self._read_lock = asyncio.Lock()
        self._read_owner: asyncio.Task[object] | None = None
        self._lock = asyncio.Lock()
        # The task inside `transaction()`: a nested call from that same task joins instead of deadlocking.
        self._owner: asyncio.Task[object] | None = None
        # The schema version as opened: LATEST_VERSION unless opened read-only (which never migrates).
        self.schema = LATEST_VERSION

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) the database at `path` and apply pending migrations.

        Raises `StoreError` with one line naming the file when it cannot be used (not SQLite, read-only,
        a missing directory), so commands print that line instead of a traceback.
        """
        try:
            return await cls._open(path)
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise busy_error(path) from exc
            raise StoreError(f"database {path} cannot be used: {exc}") from exc

    @classmethod
    async def open_readonly(cls, path: str | Path) -> Store:
        """Open the existing database at `path` for reading only (`mode=ro`): no migration, no write.

        For the commands that only read (export, pause show, diagnose, certify, dead letters): pointed at a
        backup they leave its bytes untouched, and they never migrate a database another version uses. A
        newer schema is refused; an older one is read as it is (`StoreError` if a table is missing).
        """
        try:
            db = await _open_reader(path)
        except sqlite3.Error as exc:
            raise StoreError(f"database {path} cannot be read: {exc}") from exc
        store = cls(db, str(path))
        try:
            store.schema = await schema_version(db)
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"database {path} cannot be read: {exc}") from exc
        if store.schema > LATEST_VERSION:
            await db.close()
            raise _newer_schema(store.schema)
        return store

    @classmethod
    async def _open(cls, path: str | Path) -> Store:
        folder = Path(path).parent
        if str(path) != ":memory:" and not folder.is_dir():
            # Checked here: a failed aiosqlite.connect leaves its thread to finish after the loop is gone.
            raise StoreError(f"database {path} cannot be used: the directory {folder} does not exist")
        if os.path.isdir(path):  # noqa: ASYNC240, PTH112 - one stat before opening, as for the folder above
            raise StoreError(f"database {path} cannot be used: it is a directory")
        if str(path) != ":memory:":
            try:
                make_private(path)  # 0600 before SQLite creates it; its sidecars take the same mode
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise StoreError(f"database {path} cannot be used: {reason}") from exc
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            if await schema_version(db) > LATEST_VERSION:
                await _migrate(db)  # refuses it, before any pragma writes into a newer program's file
            await db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss too, which "committed before 200" promises.
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await _migrate(db)
            reader = None if str(path) == ":memory:" else await _open_reader(path)
        except BaseException:
            await db.close()
            raise
        db.row_factory = aiosqlite.Row
        return cls(db, str(path), reader)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection for reads outside any write: committed rows only; a failure is a `StoreError`."""
        try:
            async with self._reading() as db:
                yield db
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The read connection (the writer's, under its lock, for an in-memory database)."""
        task = asyncio.current_task()
        if self._reader is not None:
            if task is not None and task is self._read_owner:
                yield self._reader  # a nested read of the same task joins its snapshot
                return
            async with self._read_lock:
                self._read_owner = task
                try:
                    yield self._reader
                finally:
                    self._read_owner = None
            return
        if task is not None and task is self._owner:
            yield self.db  # inside this task's own transaction: its reads belong to it
            return
        async with self._lock:  # an in-memory database has no second connection
            yield self.db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception (including cancellation).

        A failed statement or commit comes out as `StoreError` (raised from the driver's error).
        """
        task = asyncio.current_task()
        if task is not None and task is self._owner:
            yield self.db  # already inside one: the outer transaction commits or rolls back
            return
        async with self._lock:
            self._owner = task
            try:
                try:
                    await self.db.execute("BEGIN IMMEDIATE")
                    yield self.db
                    await asyncio.shield(self.db.execute("COMMIT"))
                except BaseException as exc:
                    # Shielded: a cancelled task must still end its transaction. The connection's thread runs
                    # statements in order, so this ROLLBACK follows even a BEGIN that was cancelled mid-await;
                    # after a failed COMMIT (disk full) it ends what is left open.
                    await asyncio.shield(self._rollback())
                    if isinstance(exc, sqlite3.Error):
                        raise store_error(exc, self.path) from exc
                    raise
            finally:
                self._owner = None

    async def _rollback(self) -> None:
        # When the BEGIN itself failed (busy) there is nothing to roll back.
        with contextlib.suppress(sqlite3.OperationalError):
            await self.db.execute("ROLLBACK")

    @staticmethod
    @contextmanager
    def hold(path: str, name: str, holder: str) -> Iterator[None]:
        """Hold `<path>.<name>.lock` for the block, or raise `StoreError` saying who holds it now.

        Unlike `SqliteUnitOfWork.exclusive` it does not wait: a second `run` on one database refuses to
        start. `holder` (who and since when) is written into the file for that refusal to quote; the kernel
        releases the lock when its holder dies, even by kill -9.
        """
        if path == ":memory:":
            yield
            return
        try:
            fd = os.open(lock_path(path, name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:  # a missing or read-only folder
            raise StoreError(f"database {path} cannot be used: {exc.strerror or type(exc).__name__}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise StoreError(f"database {path} is in use by another `{name}`: {other}") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @asynccontextmanager
    async def writer_turn(self) -> AsyncIterator[WriterTurn]:
        """Hold the transaction lock (as `transaction()` does) and get the writer's thread to run on.

        For hot paths that would otherwise hop to aiosqlite's thread once per statement (see `WriterTurn`),
        and that want to decide what to write only once no other transaction can delay it: the group
        commit takes its batch inside, so requests that arrived while the worker's transaction held the
        lock join this commit instead of waiting for the next one.
        """
        async with self._lock:
            yield WriterTurn(self.db)

    async def run_on_writer(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(sqlite3_connection, *args)` on the writer connection's own thread, holding the lock."""
        async with self.writer_turn() as writer:
            return await writer.run(fn, *args)

    async def write(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(sqlite3_connection, *args)` in one transaction run whole on the writer's thread: one hop.

        Statement by statement (`transaction()`), every statement is a hop that waits its turn on a loop
        that may be answering webhooks, and the writer stays held from their group commit all that time.
        A failure is a `StoreError`, as from `transaction()`.
        """
        try:
            return await self.run_on_writer(run_transaction, fn, *args)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    async def ping(self) -> None:
        """Raise `StoreError` unless the database is writable and fully migrated (readiness)."""
        try:
            version = await schema_version(self.db)
            async with self._lock:
                # BEGIN IMMEDIATE takes the write lock: it fails when the file or directory is read-only.
                await self.db.execute("BEGIN IMMEDIATE")
                await self.db.execute("ROLLBACK")
        except aiosqlite.Error as exc:
            raise StoreError(f"database not writable: {type(exc).__name__}") from exc
        if version != LATEST_VERSION:
            raise StoreError(f"database schema at version {version}, expected {LATEST_VERSION}")

    async def close(self) -> None:
        """Close the connection; waits for a running transaction to finish first."""
        async with self._lock:
            if self._reader is not None:
                await self._reader.close()
            await self.db.close()


def store_error(exc: sqlite3.Error, path: str) -> StoreError:
    """The driver's error as ours (classified in the core without it): its message names the failure
    (locked, full, read-only), never a value; a lock another process held too long is `DatabaseBusy`."""
    if is_busy(exc):
        return busy_error(path)
    return StoreError(f"{type(exc).__name__}: {exc}")


async def schema_version(db: aiosqlite.Connection) -> int:
    """The database's `PRAGMA user_version`."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply every migration newer than the database, each in its own transaction with its version bump."""
    version = await schema_version(db)
    if version > LATEST_VERSION:
        raise _newer_schema(version)
    if version < LATEST_VERSION:
        await WriterTurn(db).run(apply_migrations)


def _newer_schema(version: int) -> StoreError:
    return StoreError(f"database schema version {version} is newer than this program ({LATEST_VERSION})")


async def _open_reader(path: str | Path) -> aiosqlite.Connection:
    """A read-only connection to the (already migrated, WAL) database at `path`."""
    reader = await aiosqlite.connect(sqlite_uri(path, "ro"), uri=True, isolation_level=None)
    try:
        await reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except BaseException:
        await reader.close()
        raise
    reader.row_factory = aiosqlite.Row
    return reader


async def fetch_value(db: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> object:
    """The first column of the first row of `sql`, or None when there is no row (or it is NULL)."""
    async with db.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def fetch_int(db: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> int | None:
    """`fetch_value` as an int (a count, an id, a sequence), None for no row or NULL."""
    value = await fetch_value(db, sql, params)
    if value is None:
        return None
    return int(value) if isinstance(value, int | float) else int(str(value))


async def fetch_float(db: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> float | None:
    """`fetch_value` as a float (a time), None for no row or NULL."""
    value = await fetch_value(db, sql, params)
    if value is None:
        return None
    return float(value) if isinstance(value, int | float) else float(str(value))


async def fetch_text(db: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> str | None:
    """`fetch_value` as text (a status), None for no row or NULL."""
    value = await fetch_value(db, sql, params)
    return None if value is None else str(value)
