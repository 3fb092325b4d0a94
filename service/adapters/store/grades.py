"""The mirror's participants and current grade versions (`unit.grades`).

Bound to the connection of one unit (`SqliteUnitOfWork`), like the flows beside them (mirror.py). Every
write reports the rows it added, changed and removed (`Changes`), for the counts of the run that wrote it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence

import aiosqlite

from service.adapters.store.connection import fetch_int
from service.adapters.store.mirror import id_list
from service.core.records import GradeVersion, Participant
from service.core.run_record import Changes


class SqliteGrades:
    """`unit.grades`: the mirror's participants and current grade versions."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def replace_participants(
        self, flow_id: int, participants: Sequence[Participant], now: float
    ) -> Changes:
        """Make the mirror's participants of `flow_id` exactly `participants`; those added, changed, removed."""
        fetched = {p.participant_id: p for p in participants}
        changes = Changes.between(await self._participants(flow_id), fetched)
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
            (flow_id, id_list(p.participant_id for p in participants)),
        )
        return changes

    async def _participants(self, flow_id: int) -> dict[int, Participant]:
        """The mirror's participants of `flow_id`, by participant id."""
        sql = (
            "SELECT flow_id, participant_id, user_id, number, activated, group_id, submission_id"
            " FROM participants WHERE flow_id = ?"
        )
        async with self._db.execute(sql, (flow_id,)) as cursor:
            rows = await cursor.fetchall()
        return {
            int(r[1]): Participant(r[0], r[1], r[2], r[3], None if r[4] is None else bool(r[4]), r[5], r[6])
            for r in rows
        }

    async def keys(self, flow_id: int) -> dict[int, str]:
        """participantId -> the idempotency key of the stored grade version."""
        sql = "SELECT participant_id, version_key FROM assessments WHERE flow_id = ?"
        async with self._db.execute(sql, (flow_id,)) as cursor:
            return {int(row[0]): str(row[1]) for row in await cursor.fetchall()}

    async def write(self, versions: Sequence[GradeVersion], now: float) -> Changes:
        """Insert or update these grade versions, bumping each participant's version counter; how many were
        new to the mirror (added) and how many replaced a stored one (changed)."""
        if not versions:  # a refresh that found nothing new: no hop to the writer's thread
            return Changes()
        stored = await self._stored(versions)
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
        return Changes(added=len(versions) - stored, changed=stored)

    async def _stored(self, versions: Sequence[GradeVersion]) -> int:
        """How many of these participants have a stored grade already."""
        by_flow: dict[int, list[int]] = {}
        for v in versions:
            by_flow.setdefault(v.flow_id, []).append(v.participant_id)
        sql = (
            "SELECT COUNT(*) FROM assessments WHERE flow_id = ?"
            " AND participant_id IN (SELECT value FROM json_each(?))"
        )
        return sum([await fetch_int(self._db, sql, (f, id_list(ids))) or 0 for f, ids in by_flow.items()])

    async def remove_except(self, flow_id: int, participant_ids: Iterable[int]) -> Changes:
        """Drop stored grades of participants WISEflow no longer lists for the flow; how many went."""
        cursor = await self._db.execute(
            "DELETE FROM assessments WHERE flow_id = ?"
            " AND participant_id NOT IN (SELECT value FROM json_each(?))",
            (flow_id, id_list(participant_ids)),
        )
        return Changes(removed=max(cursor.rowcount, 0))

    async def stream(self) -> AsyncGenerator[GradeVersion, None]:
        """Every mirrored grade, ordered by flow and participant, row by row (export, checks)."""
        sql = (
            "SELECT flow_id, participant_id, grade, admin_grade, grade_date, admin_grade_date, export_state"
            " FROM assessments ORDER BY flow_id, participant_id"
        )
        async with self._db.execute(sql) as cursor:
            async for row in cursor:
                yield GradeVersion(*row)
