"""One asyncio lock per key, kept only while someone holds or waits for it.

A lock per flow kept for the life of the process grows with every flow ever refreshed (about 115 bytes
each, never freed). Here a key's entry counts its holder and waiters and leaves when the last one does, so
the table holds only the keys in use: a handful, whatever the number of flows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # the holder and the waiters


class KeyedLocks:
    """`async with locks.hold(key):` one holder per key at a time; a key nobody uses takes no memory."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}

    def __len__(self) -> int:
        """Keys held or waited for now."""
        return len(self._entries)

    def users(self, key: Hashable) -> int:
        """How many hold or wait for `key`'s lock now."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry.users

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold `key`'s lock for the block (waiting for its holder first); the entry goes with the last user."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:  # also when cancelled while waiting: a waiter that left is no user
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
