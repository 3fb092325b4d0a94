"""Repository of sync runs and checkpoints: what each run did, and where an interrupted one stopped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson


@dataclass(slots=True)
class RunCounters:
    """What a run has done so far; written to `sync_runs` as it goes and at its end."""

    api_calls: int = 0
    pages: int = 0
    records: int = 0
    changes: int = 0


async def start_run(db: aiosqlite.Connection, now: float) -> int:
    """Record a new run as running; returns its id."""
    cursor = await db.execute("INSERT INTO sync_runs (started_at) VALUES (?)", (now,))
    return int(cursor.lastrowid or 0)


async def save_counters(db: aiosqlite.Connection, run_id: int, counters: RunCounters) -> None:
    """Persist a running run's counters (so a crashed run still shows what it did)."""
    await db.execute(
        "UPDATE sync_runs SET api_calls = ?, pages = ?, records = ?, changes = ? WHERE run_id = ?",
        (counters.api_calls, counters.pages, counters.records, counters.changes, run_id),
    )


async def finish_run(
    db: aiosqlite.Connection, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
) -> None:
    """Close a run with its outcome (ok | interrupted | failed) and final counters."""
    await save_counters(db, run_id, counters)
    await db.execute(
        "UPDATE sync_runs SET ended_at = ?, outcome = ?, reason = ? WHERE run_id = ?",
        (now, outcome, None if reason is None else reason[:500], run_id),
    )


async def abandon_running(db: aiosqlite.Connection, now: float) -> int:
    """Mark runs left 'running' by a dead process as interrupted; returns how many."""
    cursor = await db.execute(
        "UPDATE sync_runs SET outcome = 'interrupted', ended_at = ?, reason = 'process ended mid-run'"
        " WHERE outcome = 'running'",
        (now,),
    )
    return max(cursor.rowcount, 0)


async def recent_runs(db: aiosqlite.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The newest runs, newest first, as plain dicts."""
    sql = (
        "SELECT run_id, started_at, ended_at, outcome, reason, api_calls, pages, records, changes"
        " FROM sync_runs ORDER BY run_id DESC LIMIT ?"
    )
    async with db.execute(sql, (limit,)) as cursor:
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


async def get_checkpoint(db: aiosqlite.Connection, key: str) -> Any:
    """The JSON value stored under `key`, or None."""
    async with db.execute("SELECT value FROM checkpoints WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else orjson.loads(row[0])


async def set_checkpoint(db: aiosqlite.Connection, key: str, value: Any, now: float) -> None:
    """Store a JSON value under `key`."""
    await db.execute(
        "INSERT INTO checkpoints (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, orjson.dumps(value).decode(), now),
    )


async def delete_checkpoint(db: aiosqlite.Connection, key: str) -> None:
    """Forget `key`."""
    await db.execute("DELETE FROM checkpoints WHERE key = ?", (key,))
