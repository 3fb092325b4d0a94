"""`wiseflow-sync diagnose X_TRACE_ID`: everything the service recorded about one WISEflow request.

WISEflow support asks for the `X-Trace-Id` of a failing call; this answers "what did we send, what came
back, in which sync run, and what else happened around it" from the database alone, without WISEflow.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from service.adapters.store import Store, journal
from service.adapters.store.journal import JournalRow
from service.commands import existing_database, opened
from service.settings import load_settings

# X-Trace-Id values are UUIDs in practice; accept any short token of safe characters.
TRACE_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Seconds either side of the request whose neighbours are shown as context.
CONTEXT_WINDOW: Final = 5.0


def _trace_id(raw: str) -> str:
    if not TRACE_ID.match(raw):
        raise argparse.ArgumentTypeError("not an X-Trace-Id (letters, digits, '-', '.', ':' only)")
    return raw


def register(subparsers: Any) -> None:
    """Add the `diagnose` command."""
    p = subparsers.add_parser("diagnose", help="show what the service recorded about one X-Trace-Id")
    p.add_argument("trace_id", metavar="X_TRACE_ID", type=_trace_id, help="the X-Trace-Id of a response")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the report; exit 1 when the journal has no such request."""
    report = asyncio.run(collect(existing_database(load_settings(env)), args.trace_id))
    if args.format == "json":
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_text(report))
    return 0 if report["requests"] else 1


async def collect(database: str, trace_id: str) -> dict[str, Any]:
    """The journal rows with this trace id, the sync run they belong to, and their neighbours."""
    async with opened(database, read_only=True) as store:
        rows = await journal.find_by_trace(store, trace_id)
        report: dict[str, Any] = {"trace_id": trace_id, "requests": [_row(r) for r in rows]}
        if rows:
            report["sync_run"] = await _run_at(store, rows[0].at)
            report["around"] = await _around(store, rows[0].at, trace_id)
        return report


def _row(row: JournalRow) -> dict[str, Any]:
    return {
        "at": _iso(row.at),
        "method": row.method,
        "path": row.path,
        "status": row.status,
        "duration_ms": row.duration_ms,
        "attempt": row.attempt,
        "trace_id": row.trace_id,
    }


async def _run_at(store: Store, at: float) -> dict[str, Any] | None:
    run = await journal.run_at(store, at)
    if run is None:
        return None  # a webhook-driven refresh or a command outside a run
    run["started_at"] = _iso(run["started_at"])
    run["ended_at"] = None if run["ended_at"] is None else _iso(run["ended_at"])
    return run


async def _around(store: Store, at: float, trace_id: str) -> list[dict[str, Any]]:
    return [_row(row) for row in await journal.around(store, at, CONTEXT_WINDOW, trace_id)]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


def render_text(report: dict[str, Any]) -> str:
    """A human-readable report."""
    if not report["requests"]:
        return (
            f"no request with X-Trace-Id {report['trace_id']} in the journal "
            "(it keeps the newest 10,000 WISEflow requests)"
        )
    lines = [f"X-Trace-Id {report['trace_id']}:"]
    lines += [_line(r) for r in report["requests"]]
    run = report.get("sync_run")
    if run is None:
        lines.append("sync run: none (a webhook refresh or a command outside a run)")
    else:
        lines.append(
            f"sync run {run['run_id']}: {run['outcome']}"
            + (f" ({run['reason']})" if run["reason"] else "")
            + f", started {run['started_at']}, {run['api_calls']} API calls, {run['changes']} changes"
        )
    around = report.get("around") or []
    lines.append(f"other requests within {CONTEXT_WINDOW:g}s: {len(around)}")
    lines += ["  " + _line(r) for r in around]
    return "\n".join(lines)


def _line(r: dict[str, Any]) -> str:
    status = "no answer" if r["status"] is None else str(r["status"])
    return (
        f"{r['at']}  {r['method']} {r['path']} -> {status}  {r['duration_ms']:.1f} ms"
        f"  attempt {r['attempt']}  x-trace-id {r['trace_id']}"
    )
