"""`wiseflow-sync runs [--limit N] [--format text|json]`: the sync runs recorded, newest first (default 20).

Each run (of `run`'s poll loop, `sync --once` or `demo`) with the command that started it, its start and end,
its outcome (ok, failed, paused by WISEflow, interrupted, running), the requests it sent counted on the wire,
what it added, changed and removed in the mirror per entity (grades also: queued for the SIS), and its
error in one line. Reads the database read-only beside the service: never creates, migrates or writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from service.adapters.store.unit import SqliteUnitOfWork
from service.commands import existing_database, number_arg, opened
from service.core.run_record import Changes, RunRecord
from service.settings import load_settings

DEFAULT_LIMIT: Final = 20
HEADER: Final = (
    "ID", "COMMAND", "STARTED (UTC)", "DURATION", "OUTCOME", "REQUESTS",
    "FLOWS", "PARTICIPANTS", "GRADES", "QUEUED", "ERROR",
)  # fmt: skip
# Columns aligned right (numbers); the last one, the error, is never padded.
RIGHT: Final = frozenset({0, 5, 9})


def register(subparsers: Any) -> None:
    """Add the `runs` command."""
    p = subparsers.add_parser(
        "runs", help="the sync runs recorded, newest first: outcome, requests, what each changed"
    )
    p.add_argument(
        "--limit",
        type=number_arg(int, "limit", 1),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"how many of the newest runs (default {DEFAULT_LIMIT})",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the newest runs of SYNC_DATABASE; a missing database is an error (none is created)."""
    records = asyncio.run(read_runs(existing_database(load_settings(env)), args.limit))
    write_runs(records, args.format, sys.stdout, time.time())  # a reader that leaves early: the CLI's 141
    return 0


async def read_runs(database: str, limit: int) -> list[RunRecord]:
    """The `limit` newest runs recorded in `database`, opened read-only."""
    async with opened(database, read_only=True) as store, SqliteUnitOfWork(store).read() as unit:
        return await unit.runs.latest(limit)


def write_runs(records: Sequence[RunRecord], fmt: str, out: TextIO, now: float) -> None:
    """The runs as a JSON list (the contract's elements) or an aligned text table."""
    if fmt == "json":
        out.write(orjson.dumps([r.as_json() for r in records], option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not records:
        out.write("no sync runs recorded yet\n")
    else:
        rows = [HEADER, *(_row(r, now) for r in records)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
        for row in rows:
            cells = [
                cell.rjust(width) if i in RIGHT else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=False))
            ]
            out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def _row(r: RunRecord, now: float) -> tuple[str, ...]:
    """One run as the table's cells."""
    started = datetime.fromtimestamp(r.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    ended = now if r.finished_at is None else r.finished_at
    duration = _duration(ended - r.started_at) + (" so far" if r.finished_at is None else "")
    counts = r.counts
    return (
        str(r.id),
        r.command or "-",
        started,
        duration,
        r.outcome,
        str(r.requests),
        _changes(counts.flows),
        _changes(counts.participants),
        _changes(counts.grades),
        str(counts.queued),
        r.error or "",
    )


def _changes(c: Changes) -> str:
    """`+added ~changed -removed`."""
    return f"+{c.added} ~{c.changed} -{c.removed}"


def _duration(seconds: float) -> str:
    """A run's length, readable at a glance: `0.4 s`, `4 min 12 s`, `2 h 05 min`."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
