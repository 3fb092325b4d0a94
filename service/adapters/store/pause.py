"""The saved pause (`PauseStore`): the wait WISEflow asked for, kept in the `checkpoints` table.

The client writes it when the 429 or the 503 arrives, and no later request leaves before the write has
committed, so a process killed just after the answer leaves the pause to the next one. The key is the one
earlier versions used for a bare number (the time alone); `load` still reads that form.

`clear` (an operator's `pause clear`) does not delete the row: it leaves a marker with the next
`generation`, so a running process can tell "an operator lifted the pause I hold" from "my own save has not
been read back" or "never saved", and lifts its pause only in the first case.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

import aiosqlite

from service.adapters.store.connection import Store, _open_reader
from service.adapters.store.runs import SqliteCheckpoints
from service.core.clock import Clock
from service.core.ports import PauseState, SavedPause
from service.errors import StoreError

PAUSE_KEY: Final = "wiseflow:not_before"


class SqlitePauseStore:
    """`PauseStore` on the service's database."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def save(self, until_wall: float, reason: str) -> int:
        """Keep the pause until `until_wall` unless a longer one is saved already (one transaction)."""
        now = self._clock.wall()
        async with self._store.transaction() as db:
            checkpoints = SqliteCheckpoints(db)
            saved = _decode(await checkpoints.get(PAUSE_KEY))
            if saved.pause is None or saved.pause.until < until_wall:
                value = {"until": until_wall, "reason": reason, "saved_at": now, "generation": saved.generation}
                await checkpoints.set(PAUSE_KEY, value, now)
            return saved.generation

    async def load(self) -> SavedPause | None:
        """The saved pause, or None."""
        return (await self.current()).pause

    async def current(self) -> PauseState:
        """The saved pause and its generation."""
        async with self._store.read() as db:
            return _decode(await SqliteCheckpoints(db).get(PAUSE_KEY))

    async def clear(self) -> SavedPause | None:
        """Forget the saved pause, counting a new generation; return what was saved."""
        now = self._clock.wall()
        async with self._store.transaction() as db:
            checkpoints = SqliteCheckpoints(db)
            saved = _decode(await checkpoints.get(PAUSE_KEY))
            await checkpoints.set(PAUSE_KEY, {"cleared_at": now, "generation": saved.generation + 1}, now)
            return saved.pause


class ReadOnlyPauseStore:
    """The saved pause of an existing database, on a read-only connection (`preflight`): never written.

    No migration, no pragma that writes, no file created: `open` refuses a path with no database there.
    """

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader

    @classmethod
    async def open(cls, path: str | Path) -> ReadOnlyPauseStore:
        """A read-only connection to the database at `path` (`StoreError` when there is none)."""
        if not Path(path).is_file():  # noqa: ASYNC240 - one stat; a failed connect would leave its thread
            raise StoreError(f"database {path} cannot be read: no database file there")
        try:
            return cls(await _open_reader(path))
        except sqlite3.Error as exc:
            raise StoreError(f"database {path} cannot be read: {exc}") from exc

    async def save(self, until_wall: float, reason: str) -> int:
        """Refused: this store is read-only (its client keeps pauses in memory, see `DurablePause`)."""
        raise StoreError("the saved pause is open read-only")

    async def load(self) -> SavedPause | None:
        """The saved pause, or None."""
        return (await self.current()).pause

    async def current(self) -> PauseState:
        """The saved pause and its generation."""
        return _decode(await SqliteCheckpoints(self._reader).get(PAUSE_KEY))

    async def clear(self) -> SavedPause | None:
        """Refused: this store is read-only."""
        raise StoreError("the saved pause is open read-only")

    async def close(self) -> None:
        """Close the connection."""
        await self._reader.close()


def _decode(value: Any) -> PauseState:
    """The stored JSON: a pause, a cleared marker, or the bare number earlier versions wrote (generation 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return PauseState(SavedPause(until=float(value), reason="Retry-After", saved_at=float(value)), 0)
    if not isinstance(value, dict):
        return PauseState(None, 0)
    generation = value.get("generation")
    generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else 0
    until = value.get("until")
    if not isinstance(until, int | float):
        return PauseState(None, generation)
    reason = value.get("reason")
    saved_at = value.get("saved_at")
    pause = SavedPause(
        until=float(until),
        reason=reason if isinstance(reason, str) else "Retry-After",
        saved_at=float(saved_at) if isinstance(saved_at, int | float) else float(until),
    )
    return PauseState(pause, generation)
