"""Repositories of sync runs (`unit.runs`: what each run did) and checkpoints (`unit.checkpoints`: where an
interrupted pass stopped, catch-up's markers, the saved pause)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiosqlite
import orjson

from service.adapters.store.connection import fetch_float
from service.core.run_record import Changes, MirrorCounts, RunRecord, one_line
from service.core.store_ports import RunCounters

# The mirror's counts of a run follow `MirrorCounts`: flows, participants, grades (added, changed, removed
# each), then the grade versions queued.
_SELECT_RUNS: Final = (
    "SELECT run_id, command, started_at, ended_at, outcome, api_calls, reason,"
    " flows_added, flows_changed, flows_removed,"
    " participants_added, participants_changed, participants_removed,"
    " grades_added, grades_changed, grades_removed, grades_queued"
    " FROM sync_runs ORDER BY run_id DESC LIMIT ?"
)
_FINISH: Final = (
    "UPDATE sync_runs SET api_calls = ?, pages = ?, records = ?, changes = ?, ended_at = ?, outcome = ?,"
    " reason = ?, flows_added = ?, flows_changed = ?, flows_removed = ?,"
    " participants_added = ?, participants_changed = ?, participants_removed = ?,"
    " grades_added = ?, grades_changed = ?, grades_removed = ?, grades_queued = ?"
    " WHERE run_id = ?"
)


class SqliteRuns:
    """`unit.runs` on one connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def start(self, now: float, command: str) -> int:
        """Record a new run of `command` (run | sync | demo) as running; returns its id."""
        sql = "INSERT INTO sync_runs (started_at, command) VALUES (?, ?)"
        cursor = await self._db.execute(sql, (now, command))
        return int(cursor.lastrowid or 0)

    async def finish(
        self, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
    ) -> None:
        """Close a run with its outcome (ok | failed | paused | interrupted) and final counters."""
        m = counters.mirror
        counts = (*_triple(m.flows), *_triple(m.participants), *_triple(m.grades), m.queued)
        error = one_line(reason)
        await self._db.execute(
            _FINISH,
            (
                *(counters.api_calls, counters.pages, counters.records, counters.changes, now, outcome),
                None if error is None else error[:500],
                *counts,
                run_id,
            ),
        )

    async def abandon_running(self, now: float) -> int:
        """Mark runs left 'running' by a dead process as interrupted; returns how many."""
        cursor = await self._db.execute(
            "UPDATE sync_runs SET outcome = 'interrupted', ended_at = ?, reason = 'process ended mid-run'"
            " WHERE outcome = 'running'",
            (now,),
        )
        return max(cursor.rowcount, 0)

    async def record_requests(self, run_id: int, by_route: Mapping[str, int]) -> None:
        """Store the requests a run sent, by route (replacing what an earlier save of the same run wrote)."""
        await self._db.execute("DELETE FROM run_requests WHERE run_id = ?", (run_id,))
        await self._db.executemany(
            "INSERT INTO run_requests (run_id, route, requests) VALUES (?, ?, ?)",
            [(run_id, route, count) for route, count in sorted(by_route.items())],
        )

    async def last_success_at(self) -> float | None:
        """When the last successful run ended, or None before the first (the staleness alert's figure)."""
        return await fetch_float(self._db, "SELECT MAX(ended_at) FROM sync_runs WHERE outcome = 'ok'")

    async def latest(self, limit: int) -> list[RunRecord]:
        """The `limit` newest runs, newest first, as recorded."""
        async with self._db.execute(_SELECT_RUNS, (limit,)) as cursor:
            return [_record(row) for row in await cursor.fetchall()]


def _triple(changes: Changes) -> tuple[int, int, int]:
    return changes.added, changes.changed, changes.removed


def _record(row: Sequence[Any]) -> RunRecord:
    """A `sync_runs` row as `_SELECT_RUNS` reads it."""
    run_id, command, started, ended, outcome, requests, reason = row[:7]
    n = [int(value) for value in row[7:]]
    counts = MirrorCounts(Changes(*n[0:3]), Changes(*n[3:6]), Changes(*n[6:9]), n[9])
    return RunRecord(
        int(run_id),
        command,
        float(started),
        None if ended is None else float(ended),
        str(outcome),
        int(requests),
        counts,
        one_line(reason),
    )


class SqliteCheckpoints:
    """`unit.checkpoints` on one connection: JSON values by key (the table's one encoding)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def get(self, key: str) -> Any:
        """The JSON value stored under `key`, or None."""
        async with self._db.execute("SELECT value FROM checkpoints WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _decode(str(row[0]))

    async def set(self, key: str, value: Any, now: float) -> None:
        """Store `value` under `key`, as JSON."""
        await self._db.execute(
            "INSERT INTO checkpoints (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, orjson.dumps(value).decode(), now),
        )

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        await self._db.execute("DELETE FROM checkpoints WHERE key = ?", (key,))


def _decode(text: str) -> Any:
    """A stored checkpoint value: JSON, or a float written by `repr()` before every writer used JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return float(text)  # "inf", "nan": what repr() wrote and JSON has no word for
