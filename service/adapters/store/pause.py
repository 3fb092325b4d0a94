"""The saved pause (`PauseStore`): the wait WISEflow asked for, kept in the `checkpoints` table.

The client writes it when the 429 or the 503 arrives, and no later request leaves before the write has
committed, so a process killed just after the answer leaves the pause to the next one. The key is the one
earlier versions used for a bare number (the time alone); `load` still reads that form.
"""

from __future__ import annotations

from typing import Any, Final

from service.adapters.store import runs
from service.adapters.store.connection import Store
from service.core.clock import Clock
from service.core.ports import SavedPause

PAUSE_KEY: Final = "wiseflow:not_before"


class SqlitePauseStore:
    """`PauseStore` on the service's database."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def save(self, until_wall: float, reason: str) -> None:
        """Keep the pause until `until_wall` unless a longer one is saved already (one transaction)."""
        now = self._clock.wall()
        async with self._store.transaction() as db:
            saved = _decode(await runs.get_checkpoint(db, PAUSE_KEY))
            if saved is not None and saved.until >= until_wall:
                return
            value = {"until": until_wall, "reason": reason, "saved_at": now}
            await runs.set_checkpoint(db, PAUSE_KEY, value, now)

    async def load(self) -> SavedPause | None:
        """The saved pause, or None."""
        async with self._store.read() as db:
            return _decode(await runs.get_checkpoint(db, PAUSE_KEY))

    async def clear(self) -> None:
        """Forget the saved pause."""
        async with self._store.transaction() as db:
            await runs.delete_checkpoint(db, PAUSE_KEY)


def _decode(value: Any) -> SavedPause | None:
    """The stored JSON: an object, or the bare number earlier versions wrote (no reason, no save time)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return SavedPause(until=float(value), reason="Retry-After", saved_at=float(value))
    if isinstance(value, dict) and isinstance(value.get("until"), int | float):
        reason = value.get("reason")
        saved_at = value.get("saved_at")
        return SavedPause(
            until=float(value["until"]),
            reason=reason if isinstance(reason, str) else "Retry-After",
            saved_at=float(saved_at) if isinstance(saved_at, int | float) else float(value["until"]),
        )
    return None
