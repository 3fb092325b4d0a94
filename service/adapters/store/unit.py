"""The poller's store (`SyncStore`): each transaction is a `SyncUnit` over the mirror, outbox and runs tables.

    async with sync_store.transaction() as unit:
        known = await unit.load_flow(flow_id)
        await unit.write_grades(changed, now)
        await unit.enqueue_outbox(changed, now)   # commits with the grades, or neither does

The methods are the repository functions of `mirror`, `outbox` and `runs`, bound to the transaction's
connection, so the sync loops never see a connection or a SQL string.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiosqlite

from service.adapters.store import mirror, outbox, runs
from service.adapters.store.connection import Store
from service.core.planner import FlowPlan
from service.core.records import Flow, GradeVersion, Participant
from service.core.store_ports import RunCounters


class SqliteUnit:
    """One open transaction of the sync store (a `SyncUnit`)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def load_flows(self, flow_ids: Iterable[int]) -> dict[int, tuple[Flow, FlowPlan]]:
        """The stored flows and plans among `flow_ids`."""
        return await mirror.load_flows(self._db, flow_ids)

    async def load_flow(self, flow_id: int) -> tuple[Flow, FlowPlan] | None:
        """One stored flow and its plan, or None."""
        return await mirror.load_flow(self._db, flow_id)

    async def save_flow(self, flow: Flow, now: float, clock: int, seen_at: float | None = None) -> bool:
        """Insert or update a flow's state fetched after `clock`; False if a later fetch committed first."""
        return await mirror.save_flow(self._db, flow, now, seen_at, clock=clock)

    async def save_plan(self, flow_id: int, plan: FlowPlan) -> None:
        """Insert or replace a flow's polling plan."""
        await mirror.save_plan(self._db, flow_id, plan)

    async def save_plans(self, plans: Mapping[int, FlowPlan]) -> None:
        """Insert or replace several flows' plans (flow id -> plan)."""
        await mirror.save_plans(self._db, plans)

    async def all_flows(self) -> list[tuple[Flow, FlowPlan]]:
        """Every stored flow with its plan."""
        return await mirror.all_flows(self._db)

    async def vanished_flows(self, pass_started: float) -> list[int]:
        """Flows a complete discovery pass did not list and whose last fetch is not done."""
        return await mirror.vanished_flows(self._db, pass_started)

    async def claim_refresh(self, flow_id: int, version: int) -> bool:
        """Bump the flow's refresh version if it is still `version` (the ordering guard)."""
        return await mirror.claim_refresh(self._db, flow_id, version)

    async def delete_flow(self, flow_id: int, clock: int) -> bool:
        """Forget a flow (a 404 fetched after `clock`); False if a later fetch committed first."""
        return await mirror.delete_flow(self._db, flow_id, clock)

    async def record_flow_error(self, flow_id: int, error: str) -> None:
        """Remember why a flow's last refresh failed."""
        await mirror.record_flow_error(self._db, flow_id, error)

    async def replace_participants(self, flow_id: int, participants: Sequence[Participant], now: float) -> None:
        """Make the mirror's participants of `flow_id` exactly `participants`."""
        await mirror.replace_participants(self._db, flow_id, participants, now)

    async def stored_grade_keys(self, flow_id: int) -> dict[int, str]:
        """participantId -> the idempotency key of the stored grade version."""
        return await mirror.stored_grade_keys(self._db, flow_id)

    async def write_grades(self, versions: Sequence[GradeVersion], now: float) -> None:
        """Insert or update these grade versions."""
        await mirror.write_grades(self._db, versions, now)

    async def remove_grades_except(self, flow_id: int, participant_ids: Iterable[int]) -> None:
        """Drop stored grades of participants WISEflow no longer lists."""
        await mirror.remove_grades_except(self._db, flow_id, participant_ids)

    async def enqueue_outbox(self, versions: Sequence[GradeVersion], now: float) -> int:
        """Queue these grade versions for the SIS, in this transaction."""
        return await outbox.enqueue(self._db, versions, now)

    async def get_checkpoint(self, key: str) -> Any:
        """The JSON value stored under `key`, or None."""
        return await runs.get_checkpoint(self._db, key)

    async def set_checkpoint(self, key: str, value: Any, now: float) -> None:
        """Store a JSON value under `key`."""
        await runs.set_checkpoint(self._db, key, value, now)

    async def delete_checkpoint(self, key: str) -> None:
        """Forget `key`."""
        await runs.delete_checkpoint(self._db, key)

    async def abandon_running(self, now: float) -> int:
        """Mark runs left 'running' by a dead process as interrupted."""
        return await runs.abandon_running(self._db, now)

    async def start_run(self, now: float) -> int:
        """Record a new run as running; returns its id."""
        return await runs.start_run(self._db, now)

    async def finish_run(
        self, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
    ) -> None:
        """Close a run with its outcome and final counters."""
        await runs.finish_run(self._db, run_id, now, outcome, counters, reason)

    async def record_requests(self, run_id: int, by_route: dict[str, int]) -> None:
        """Store the requests a run sent, by route."""
        await runs.record_requests(self._db, run_id, by_route)


class SqliteSyncStore:
    """The `SyncStore` port on a `Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteUnit]:
        """One `BEGIN IMMEDIATE ... COMMIT` as a `SyncUnit`."""
        async with self._store.transaction() as db:
            yield SqliteUnit(db)

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """A lock shared by every process on the database (runs never overlap)."""
        return self._store.exclusive(name)

    async def refresh_version(self, flow_id: int) -> int:
        """The flow's committed refresh version, read (without the writer lock) before a refresh fetches."""
        async with self._store.read() as db:
            return await mirror.refresh_version(db, flow_id)

    async def state_clock(self) -> int:
        """The flows' state clock (committed), read before fetching any flow's state."""
        async with self._store.read() as db:
            return await mirror.state_clock(db)
