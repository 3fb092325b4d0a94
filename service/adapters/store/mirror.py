"""Repositories of the mirror: flows with their polling plan (`unit.flows`), participants and current grade
versions (`unit.grades`).

Each is bound to the connection of one unit (`SqliteUnitOfWork`), so the caller decides what commits
together: a flow's grades, its outbox rows and its new plan commit as one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence

import aiosqlite
import orjson

from service.adapters.store.connection import fetch_int
from service.core.blindness import MirroredFlow
from service.core.planner import FlowPlan
from service.core.records import Flow, GradeVersion, Participant
from service.core.store_ports import StoredFlow

# A flow's 8 columns, then its plan's 4, as `_flow` and `_plan` read them.
_SELECT_FLOWS = (
    "SELECT f.flow_id, f.state, f.title, f.created_at, f.participation_start, f.participation_end,"
    " f.marking_start, f.marking_end, p.last_polled_at, p.next_poll_at, p.final_fetch_done, p.early_refresh"
    " FROM flows f JOIN flow_plan p USING (flow_id)"
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


def _id_list(ids: Iterable[int]) -> str:
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
        async with self._db.execute(sql, (_id_list(ids),)) as cursor:
            rows = await cursor.fetchall()
        return {int(row[0]): _stored(row) for row in rows}

    async def get(self, flow_id: int) -> StoredFlow | None:
        """One stored flow and its plan, or None."""
        return (await self.get_many([flow_id])).get(flow_id)

    async def all(self) -> list[StoredFlow]:
        """Every stored flow with its plan, by id (the planner decides which are due)."""
        async with self._db.execute(_SELECT_FLOWS + " ORDER BY f.flow_id") as cursor:
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
    ) -> bool:
        """Insert or update a flow's state and dates (`seen_at`: the discovery pass that listed it).

        `clock` is the state clock read before the fetch began (`state_clock`): the write is skipped (False)
        when a fetch of this flow that began later has committed since, so the mirror never moves
        backwards; a flow a discovery pass listed is still marked seen. None only for rows no fetch
        produced (test fixtures).
        """
        await self._db.execute("UPDATE flow_state_clock SET value = value + 1")
        cursor = await self._db.execute(
            _SAVE_FLOW,
            (
                flow.flow_id,
                flow.state,
                flow.title,
                flow.created_at,
                flow.participation_start,
                flow.participation_end,
                flow.marking_start,
                flow.marking_end,
                now,
                now if seen_at is None else seen_at,
                now,
                clock,
                clock,
            ),
        )
        if cursor.rowcount == 1:
            return True
        if seen_at is not None:
            sql = "UPDATE flows SET seen_at = max(seen_at, ?) WHERE flow_id = ?"
            await self._db.execute(sql, (seen_at, flow.flow_id))
        return False

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

    async def delete(self, flow_id: int, clock: int) -> bool:
        """Forget a flow with its plan, participants and grades (cascade; its outbox rows stay).

        `clock` as for `save`: a 404 fetched before a later fetch that found the flow and committed
        since does not remove it (False).
        """
        sql = "DELETE FROM flows WHERE flow_id = ? AND state_version <= ?"
        cursor = await self._db.execute(sql, (flow_id, clock))
        return cursor.rowcount == 1

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


class SqliteGrades:
    """`unit.grades`: the mirror's participants and current grade versions."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def replace_participants(self, flow_id: int, participants: Sequence[Participant], now: float) -> None:
        """Make the mirror's participants of `flow_id` exactly `participants`."""
        await self._db.executemany(
            "INSERT INTO participants (flow_id, participant_id, user_id, number, activated, group_id,"
            " submission_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (flow_id, participant_id) DO UPDATE SET user_id = excluded.user_id,"
            " number = excluded.number, activated = excluded.activated, group_id = excluded.group_id,"
            " submission_id = excluded.submission_id, updated_at = excluded.updated_at",
            [
                (
                    p.flow_id,
                    p.participant_id,
                    p.user_id,
                    p.number,
                    None if p.activated is None else int(p.activated),
                    p.group_id,
                    p.submission_id,
                    now,
                )
                for p in participants
            ],
        )
        # By id, not by `updated_at < now`: two refreshes within one clock tick must still drop the removed.
        await self._db.execute(
            "DELETE FROM participants WHERE flow_id = ?"
            " AND participant_id NOT IN (SELECT value FROM json_each(?))",
            (flow_id, _id_list(p.participant_id for p in participants)),
        )

    async def keys(self, flow_id: int) -> dict[int, str]:
        """participantId -> the idempotency key of the stored grade version."""
        sql = "SELECT participant_id, version_key FROM assessments WHERE flow_id = ?"
        async with self._db.execute(sql, (flow_id,)) as cursor:
            return {int(row[0]): str(row[1]) for row in await cursor.fetchall()}

    async def write(self, versions: Sequence[GradeVersion], now: float) -> None:
        """Insert or update these grade versions, bumping each participant's version counter."""
        await self._db.executemany(
            "INSERT INTO assessments (flow_id, participant_id, grade, admin_grade, grade_date,"
            " admin_grade_date, export_state, version, version_key, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (flow_id, participant_id) DO UPDATE SET grade = excluded.grade,"
            " admin_grade = excluded.admin_grade, grade_date = excluded.grade_date,"
            " admin_grade_date = excluded.admin_grade_date, export_state = excluded.export_state,"
            " version = assessments.version + 1, version_key = excluded.version_key,"
            " updated_at = excluded.updated_at",
            [
                (
                    v.flow_id,
                    v.participant_id,
                    v.grade,
                    v.admin_grade,
                    v.date,
                    v.admin_grade_date,
                    v.export_state,
                    v.idempotency_key,
                    now,
                )
                for v in versions
            ],
        )

    async def remove_except(self, flow_id: int, participant_ids: Iterable[int]) -> None:
        """Drop stored grades of participants WISEflow no longer lists for the flow."""
        await self._db.execute(
            "DELETE FROM assessments WHERE flow_id = ?"
            " AND participant_id NOT IN (SELECT value FROM json_each(?))",
            (flow_id, _id_list(participant_ids)),
        )

    async def stream(self) -> AsyncGenerator[GradeVersion, None]:
        """Every mirrored grade, ordered by flow and participant, row by row (export, checks)."""
        sql = (
            "SELECT flow_id, participant_id, grade, admin_grade, grade_date, admin_grade_date, export_state"
            " FROM assessments ORDER BY flow_id, participant_id"
        )
        async with self._db.execute(sql) as cursor:
            async for row in cursor:
                yield GradeVersion(*row)
