"""The mirror's flows with their polling plan (`unit.flows`); participants and grades are in grades.py.

Each repository is bound to the connection of one unit (`SqliteUnitOfWork`), so the caller decides what
commits together: a flow's grades, its outbox rows and its new plan commit as one. Every write reports what
it did to the mirror (`Changes`), for the counts of the run that wrote it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import aiosqlite
import orjson

from service.adapters.store.connection import WriterTurn, fetch_int
from service.core.blindness import MirroredFlow
from service.core.planner import DueKey, FlowPlan
from service.core.records import Flow
from service.core.run_record import Changes, MirrorCounts
from service.core.store_ports import StoredFlow

# A flow's 8 columns, as `Flow` takes them.
_SELECT_FLOW = (
    "SELECT flow_id, state, title, created_at, participation_start, participation_end, marking_start,"
    " marking_end FROM flows"
)
# A flow's 8 columns, then its plan's 4, as `_stored` reads them.
_SELECT_FLOWS = (
    "SELECT f.flow_id, f.state, f.title, f.created_at, f.participation_start, f.participation_end,"
    " f.marking_start, f.marking_end, p.last_polled_at, p.next_poll_at, p.final_fetch_done, p.early_refresh"
    " FROM flows f JOIN flow_plan p USING (flow_id)"
)
_PAGE = " WHERE f.flow_id > ? ORDER BY f.flow_id LIMIT ?"
# The due flows in `due_key` order, after a key: the early refreshes (few), then the rest by due time.
# (next_poll_at, flow_id) is `flow_plan_due`'s order (flow_id is the rowid), so each page is a range read.
_DUE_EARLY = (
    " WHERE p.early_refresh = 1 AND (p.next_poll_at, p.flow_id) > (?, ?)"
    " ORDER BY p.next_poll_at, p.flow_id LIMIT ?"
)
_DUE_LATE = (
    " WHERE p.early_refresh = 0 AND p.next_poll_at <= ? AND (p.next_poll_at, p.flow_id) > (?, ?)"
    " ORDER BY p.next_poll_at, p.flow_id LIMIT ?"
)
_SAVE_FLOW = (
    "INSERT INTO flows (flow_id, state, title, created_at, participation_start, participation_end,"
    " marking_start, marking_end, first_seen_at, seen_at, updated_at, state_version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT value FROM flow_state_clock))"
    " ON CONFLICT (flow_id) DO UPDATE SET state = excluded.state, title = excluded.title,"
    " created_at = excluded.created_at, participation_start = excluded.participation_start,"
    " participation_end = excluded.participation_end, marking_start = excluded.marking_start,"
    " marking_end = excluded.marking_end, seen_at = max(flows.seen_at, excluded.seen_at),"
    " updated_at = excluded.updated_at, state_version = excluded.state_version"
    " WHERE ? IS NULL OR flows.state_version <= ?"
)


def _stored(row: Sequence[object]) -> StoredFlow:
    last, next_at, final, early = row[8:12]
    plan = FlowPlan(last, float(next_at), bool(final), bool(early))  # type: ignore[arg-type]
    return Flow(*row[:8]), plan  # type: ignore[arg-type]


def _save_flows(
    conn: sqlite3.Connection, flows: Sequence[Flow], now: float, clock: int | None, seen_at: float | None
) -> list[Changes | None]:
    """`SqliteFlows.save_many`'s statements, on the connection's thread inside the unit's transaction."""
    saved: list[Changes | None] = []
    for flow in flows:
        row = conn.execute(_SELECT_FLOW + " WHERE flow_id = ?", (flow.flow_id,)).fetchone()
        before = {} if row is None else {flow.flow_id: Flow(*row)}
        conn.execute("UPDATE flow_state_clock SET value = value + 1")
        seen = now if seen_at is None else seen_at
        dates = (flow.participation_start, flow.participation_end, flow.marking_start, flow.marking_end)
        values = (flow.flow_id, flow.state, flow.title, flow.created_at, *dates, now, seen, now, clock, clock)
        if conn.execute(_SAVE_FLOW, values).rowcount == 1:
            saved.append(Changes.between(before, {flow.flow_id: flow}))
            continue
        if seen_at is not None:
            conn.execute(
                "UPDATE flows SET seen_at = max(seen_at, ?) WHERE flow_id = ?", (seen_at, flow.flow_id)
            )
        saved.append(None)
    return saved


def id_list(ids: Iterable[int]) -> str:
    """Ids as one JSON array parameter: any number of them, where `IN (?, ?, ...)` stops at 32,766."""
    return orjson.dumps([int(i) for i in ids]).decode()


class SqliteFlows:
    """`unit.flows`: flows and their plans, with the guards a refresh commits under."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def get_many(self, flow_ids: Iterable[int]) -> dict[int, StoredFlow]:
        """The stored flows and plans among `flow_ids` (a page of discovery, typically)."""
        ids = list(flow_ids)
        if not ids:
            return {}
        sql = _SELECT_FLOWS + " WHERE f.flow_id IN (SELECT value FROM json_each(?))"  # noqa: S608 - constant
        async with self._db.execute(sql, (id_list(ids),)) as cursor:
            rows = await cursor.fetchall()
        return {int(row[0]): _stored(row) for row in rows}

    async def get(self, flow_id: int) -> StoredFlow | None:
        """One stored flow and its plan, or None."""
        return (await self.get_many([flow_id])).get(flow_id)

    async def page(self, after: int, limit: int) -> list[StoredFlow]:
        """Stored flows with their plans by id: the first `limit` after flow id `after` (0: from the start)."""
        return await self._stored_rows(_SELECT_FLOWS + _PAGE, (after, limit))

    async def due(self, now: float, after: DueKey | None, limit: int) -> list[StoredFlow]:
        """The next `limit` flows due at `now`, after `after` (the `due_key` of the last one read; None:
        from the first), in `planner.due_in_order`'s order: early refreshes, then the rest by due time.

        `is_due` and `due_key` are the planner's; this is the same rule as a query, two keyset reads on
        `flow_plan_due`, so a run holds one page of flows at a time whatever the mirror's size (the
        contract test holds the answers to `due_in_order`'s).
        """
        late, at, flow_id = after or (False, float("-inf"), 0)
        rows: list[StoredFlow] = []
        if not late:
            rows = await self._stored_rows(_SELECT_FLOWS + _DUE_EARLY, (at, flow_id, limit))
            at, flow_id = float("-inf"), 0
        if len(rows) < limit:
            rows += await self._stored_rows(_SELECT_FLOWS + _DUE_LATE, (now, at, flow_id, limit - len(rows)))
        return rows

    async def count_due(self, now: float) -> int:
        """How many flows are due at `now` (what `due` reads in all)."""
        sql = "SELECT COUNT(*) FROM flow_plan WHERE early_refresh = 1 OR next_poll_at <= ?"
        return await fetch_int(self._db, sql, (now,)) or 0

    async def _stored_rows(self, sql: str, parameters: tuple[object, ...]) -> list[StoredFlow]:
        async with self._db.execute(sql, parameters) as cursor:
            return [_stored(row) for row in await cursor.fetchall()]

    async def live(self) -> list[MirroredFlow]:
        """Every mirrored flow that is not archived, with its last known state (what catch-up looks at)."""
        sql = (
            "SELECT f.flow_id, f.state, f.participation_start, f.participation_end, f.marking_start,"
            " f.marking_end, (SELECT MAX(a.updated_at) FROM assessments a WHERE a.flow_id = f.flow_id)"
            " FROM flows f WHERE f.state != 'ARCHIVED'"
        )
        async with self._db.execute(sql) as cursor:
            return [MirroredFlow(int(r[0]), str(r[1]), *r[2:7]) for r in await cursor.fetchall()]

    async def vanished(self, pass_started: float) -> list[int]:
        """Flows a complete discovery pass did not list and whose last fetch is not done (archived, or gone).

        The rule's one home is this query (tested directly in tests/integration/test_store.py): it is a
        filter on two stored facts, `seen_at` (which discovery pass last listed the flow) and
        `final_fetch_done` (the planner's word that nothing more is fetched), with no policy of its own to
        share with the core, so SQLite applies it rather than every flow's row being read each pass.
        """
        sql = (
            "SELECT f.flow_id FROM flows f JOIN flow_plan p USING (flow_id)"
            " WHERE f.seen_at < ? AND p.final_fetch_done = 0 ORDER BY f.flow_id"
        )
        async with self._db.execute(sql, (pass_started,)) as cursor:
            return [int(row[0]) for row in await cursor.fetchall()]

    async def save(
        self, flow: Flow, now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> Changes | None:
        """Insert or update a flow's state and dates (`seen_at`: the discovery pass that listed it); the
        flow added, changed (its state or dates differ) or neither.

        `clock` is the state clock read before the fetch began (`state_clock`): the write is skipped (None)
        when a fetch of this flow that began later has committed since, so the mirror never moves
        backwards; a flow a discovery pass listed is still marked seen. None only for rows no fetch
        produced (test fixtures).
        """
        (saved,) = await self.save_many([flow], now, clock=clock, seen_at=seen_at)
        return saved

    async def save_many(
        self, flows: Sequence[Flow], now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> list[Changes | None]:
        """`save` for each of `flows` in order (a page of discovery), as one call on the connection's thread.

        A statement a hop, a flow took four: a sync run's discovery of 20,000 flows spent most of its 26 s
        waiting for them (measured by bench/sync_scale.py --scale 10, an idle run).
        """
        return await WriterTurn(self._db).run(_save_flows, flows, now, clock, seen_at)

    async def save_plans(self, plans: Mapping[int, FlowPlan]) -> None:
        """Insert or replace the polling plans of flows (flow id -> plan), in one statement."""
        await self._db.executemany(
            "INSERT INTO flow_plan (flow_id, last_polled_at, next_poll_at, final_fetch_done, early_refresh)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (flow_id) DO UPDATE SET"
            " last_polled_at = excluded.last_polled_at, next_poll_at = excluded.next_poll_at,"
            " final_fetch_done = excluded.final_fetch_done, early_refresh = excluded.early_refresh,"
            " last_error = NULL",
            [
                (flow_id, p.last_polled_at, p.next_poll_at, int(p.final_fetch_done), int(p.early_refresh))
                for flow_id, p in plans.items()
            ],
        )

    async def record_error(self, flow_id: int, error: str) -> None:
        """Remember why a flow's last refresh failed (a short, safe label)."""
        await self._db.execute("UPDATE flow_plan SET last_error = ? WHERE flow_id = ?", (error[:500], flow_id))

    async def delete(self, flow_id: int, clock: int) -> MirrorCounts | None:
        """Forget a flow with its plan, participants and grades (cascade; its outbox rows stay); what left.

        `clock` as for `save`: a 404 fetched before a later fetch that found the flow and committed
        since does not remove it (None).
        """
        participants = await fetch_int(
            self._db, "SELECT COUNT(*) FROM participants WHERE flow_id = ?", (flow_id,)
        )
        grades = await fetch_int(self._db, "SELECT COUNT(*) FROM assessments WHERE flow_id = ?", (flow_id,))
        sql = "DELETE FROM flows WHERE flow_id = ? AND state_version <= ?"
        cursor = await self._db.execute(sql, (flow_id, clock))
        if cursor.rowcount != 1:
            return None
        return MirrorCounts(
            Changes(removed=1), Changes(removed=participants or 0), Changes(removed=grades or 0)
        )

    async def state_clock(self) -> int:
        """The flows' state clock, read before fetching a flow's state (`save(clock=...)`)."""
        return await fetch_int(self._db, "SELECT value FROM flow_state_clock") or 0

    async def refresh_version(self, flow_id: int) -> int:
        """The flow's refresh version (0 for a flow not stored), read before a refresh fetches."""
        sql = "SELECT refresh_version FROM flows WHERE flow_id = ?"
        return await fetch_int(self._db, sql, (flow_id,)) or 0

    async def claim_refresh(self, flow_id: int, version: int) -> bool:
        """Bump the flow's refresh version if it is still `version`; False when another refresh came first."""
        cursor = await self._db.execute(
            "UPDATE flows SET refresh_version = refresh_version + 1 WHERE flow_id = ? AND refresh_version = ?",
            (flow_id, version),
        )
        return cursor.rowcount == 1
