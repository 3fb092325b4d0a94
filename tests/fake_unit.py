"""`FakeUnitOfWork`: the store's ports (`service.core.store_ports`) in memory, for the loops' unit tests.

The second implementation of the `UnitOfWork` port (cosmicpython's `FakeUnitOfWork`), with the same
rules as the SQLite one where the loops depend on them, checked side by side by
tests/integration/test_store_contract.py:

- a transaction works on a copy of the committed tables and replaces them when its block ends; an
  exception leaves them as they were; one transaction at a time (a nested one of the same task joins);
- `read()` sees the committed tables only (never an open transaction) and refuses writes;
- the outbox's keys (`<key>-<n>` for a version queued again after another), one due row per participant,
  the inbox's blocked heads and refresh marks, the refresh and state-clock guards, the replay rule.

`receive(event)` is the receiver's side (not on the port): it commits an event as the inbox's group
commit does. `tables` are the committed tables, for assertions.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.core.inbox_dedupe import Stored, judge
from service.core.store_ports import InboxRow
from service.core.webhook_events import WebhookEvent
from tests.fake_queues import FakeInbox, FakeOutbox
from tests.fake_tables import FakeCheckpoints, FakeFlows, FakeGrades, FakeRuns, Tables


class FakeUnit:
    """The repositories of one transaction (or read) over a set of tables."""

    def __init__(self, tables: Tables, *, writable: bool) -> None:
        self.flows = FakeFlows(tables, writable)
        self.grades = FakeGrades(tables, writable)
        self.outbox = FakeOutbox(tables, writable)
        self.inbox = FakeInbox(tables, writable)
        self.checkpoints = FakeCheckpoints(tables, writable)
        self.runs = FakeRuns(tables, writable)


class FakeUnitOfWork:
    """The `UnitOfWork` port in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.tables = Tables()  # committed
        self.commits = 0
        self.rollbacks = 0
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._open: Tables | None = None
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnit]:
        """A copy of the committed tables, committed when the block ends, dropped when it raises."""
        task = asyncio.current_task()
        if self._open is not None and task is self._owner:
            yield FakeUnit(self._open, writable=True)  # a nested call joins the open transaction
            return
        async with self._lock:
            self._owner, self._open = task, copy.deepcopy(self.tables)
            try:
                yield FakeUnit(self._open, writable=True)
            except BaseException:
                self.rollbacks += 1
                raise
            else:
                self.tables, self.commits = self._open, self.commits + 1
            finally:
                self._owner, self._open = None, None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeUnit]:
        """The committed tables, read-only (as the store's read connection sees them)."""
        yield FakeUnit(self.tables, writable=False)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A named lock (the real one is shared by every process on the database)."""
        async with self._locks[name]:
            yield

    def receive(
        self, event: WebhookEvent, now: float, status: str = "pending", receipt: str | None = None
    ) -> bool:
        """Commit a webhook event and its delivery, as the receiver's group commit does; False: a duplicate."""
        self.tables.deliveries.append(now)
        stored = [
            Stored(r.id, (r.sequence, r.event, r.flow_id, r.participant_id), r.received_at)
            for r in self.tables.inbox.values()
        ]
        identity = (event.sequence, event.event, event.flow_id, event.participant_id)
        (verdict,) = judge(stored, [(identity, now)], max(self.tables.inbox, default=0) + 1)
        if not verdict.stored:
            return False
        self.tables.inbox[verdict.event_id] = InboxRow(
            *(verdict.event_id, event.sequence, event.event, event.flow_id, event.participant_id),
            *(event.timestamp, now, status, 0, 0.0, None, None, receipt),
        )
        return True
