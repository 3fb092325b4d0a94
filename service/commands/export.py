"""`wiseflow-sync export grades --format jsonl|csv`: the mirrored grades on stdout, one record a line.

Fields: flowId, participantId, grade, adminGrade, date (what the SIS receives). Rows are streamed from the
database, so the export of a large mirror needs no more memory than a small one.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from service.adapters.store import Store
from service.adapters.store.unit import SqliteUnitOfWork
from service.commands import existing_database, opened
from service.settings import load_settings

FIELDS = ("flowId", "participantId", "grade", "adminGrade", "date")


def register(subparsers: Any) -> None:
    """Add the `export` command."""
    p = subparsers.add_parser("export", help="print mirrored data (grades) for an SIS import or a check")
    p.add_argument("what", choices=("grades",), help="what to export")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="jsonl (default) or csv")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Export from SYNC_DATABASE; a missing database is an error, not an empty export."""
    database = existing_database(load_settings(env))
    return asyncio.run(export_grades(database, args.format, sys.stdout))


async def export_grades(database: str, fmt: str, out: TextIO) -> int:
    """Write every mirrored grade to `out` as JSON lines or CSV (with a header); the database read-only."""
    async with opened(database, read_only=True) as store:
        await _write(store, fmt, out)
    return 0


async def _write(store: Store, fmt: str, out: TextIO) -> None:
    """Stream the committed grades to `out`; the cursor is closed before the caller closes the store."""
    async with SqliteUnitOfWork(store).read() as unit:
        grades = unit.grades.stream()
        try:
            writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n") if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            async for version in grades:
                record = version.payload()
                if writer is not None:
                    writer.writerow(record)
                else:
                    out.write(orjson.dumps(record).decode() + "\n")
        finally:
            await grades.aclose()
