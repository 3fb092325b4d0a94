"""Repository of sync runs and checkpoints: what each run did, and where an interrupted one stopped."""

from __future__ import annotations

from typing import Any

import aiosqlite
import orjson

from service.adapters.store.connection import fetch_float
from service.core.store_ports import RunCounters


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


async def record_requests(db: aiosqlite.Connection, run_id: int, by_route: dict[str, int]) -> None:
    """Store the requests a run sent, by route (replacing what an earlier save of the same run wrote)."""
    await db.execute("DELETE FROM run_requests WHERE run_id = ?", (run_id,))
    await db.executemany(
        "INSERT INTO run_requests (run_id, route, requests) VALUES (?, ?, ?)",
        [(run_id, route, count) for route, count in sorted(by_route.items())],
    )


async def last_success_at(db: aiosqlite.Connection) -> float | None:
    """When the last successful run ended, or None before the first."""
    return await fetch_float(db, "SELECT MAX(ended_at) FROM sync_runs WHERE outcome = 'ok'")


async def get_checkpoint(db: aiosqlite.Connection, key: str) -> Any:
    """The JSON value stored under `key`, or None."""
    async with db.execute("SELECT value FROM checkpoints WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else decode_checkpoint(str(row[0]))


def decode_checkpoint(text: str) -> Any:
    """A stored checkpoint value: JSON, or a float written by `repr()` before every writer used JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return float(text)  # "inf", "nan": what repr() wrote and JSON has no word for


async def set_checkpoint(db: aiosqlite.Connection, key: str, value: Any, now: float) -> None:
    """Store `value` under `key`, as JSON (the one encoding of the checkpoints table)."""
    await db.execute(
        "INSERT INTO checkpoints (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, orjson.dumps(value).decode(), now),
    )


async def delete_checkpoint(db: aiosqlite.Connection, key: str) -> None:
    """Forget `key`."""
    await db.execute("DELETE FROM checkpoints WHERE key = ?", (key,))
