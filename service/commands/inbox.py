"""`wiseflow-sync inbox dead-letters` and `inbox replay ID|--all`: webhook events that failed for good.

`dead-letters` lists them (sequence, event, flow, attempts, last error; never the body). `replay`
re-queues one or all of them with a fresh attempt count; the running service's inbox worker picks them up
on its next pass. Replaying is safe to repeat: only dead events are touched, and processing is idempotent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from service.adapters.store.inbox import Inbox
from service.commands import iso, with_store
from service.core.store_ports import InboxRow


def register(subparsers: Any) -> None:
    """Add the `inbox` command."""
    p = subparsers.add_parser("inbox", help="list or replay webhook events that failed (dead letters)")
    sub = p.add_subparsers(dest="inbox_command", metavar="ACTION")
    sub.required = True
    dead = sub.add_parser("dead-letters", help="list dead webhook events")
    dead.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    dead.set_defaults(handler=run_dead_letters)
    replay = sub.add_parser("replay", help="re-queue dead webhook events (safe to repeat)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("sequence", nargs="?", type=int, metavar="ID", help="the event's sequence number")
    which.add_argument("--all", action="store_true", help="every dead event")
    replay.set_defaults(handler=run_replay)


def run_dead_letters(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the dead letters; exit 0 (an empty list is good news)."""
    rows = with_store(env, Inbox, lambda inbox: inbox.dead_letters())
    write_dead_letters(rows, args.format, sys.stdout)
    return 0


def run_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Re-queue; exit 1 only when the ID names no event at all."""
    sequence = None if args.all else args.sequence
    count, status = with_store(env, Inbox, lambda inbox: replay(inbox, sequence))
    if sequence is not None and status is None:
        print(f"wiseflow-sync inbox replay: no event with sequence {sequence}", file=sys.stderr)
        return 1
    if count:
        print(f"re-queued {count} event(s); the service's inbox worker will process them")
    elif sequence is None:
        print("no dead events to replay")
    else:
        print(f"event {sequence} is {status}: nothing to replay")
    return 0


async def replay(inbox: Inbox, sequence: int | None) -> tuple[int, str | None]:
    """Re-queue, and say the event's status before (None: no such event; 'dead' when not asked for one)."""
    status = "dead" if sequence is None else await inbox.status_of(sequence)
    return await inbox.replay(sequence), status


def write_dead_letters(rows: list[InboxRow], fmt: str, out: TextIO) -> None:
    """Write the dead letters as text lines (with a header) or one JSON document."""
    if fmt == "json":
        doc = [
            {
                "sequence": r.sequence,
                "event": r.event,
                "flowId": r.flow_id,
                "attempts": r.attempts,
                "lastError": r.last_error,
                "receivedAt": iso(r.received_at),
            }
            for r in rows
        ]
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not rows:
        out.write("no dead letters\n")
        return
    out.write("SEQUENCE  EVENT                 FLOW      ATTEMPTS  RECEIVED                   LAST ERROR\n")
    for r in rows:
        flow = "-" if r.flow_id is None else str(r.flow_id)
        out.write(
            f"{r.sequence:<9} {r.event:<21} {flow:<9} {r.attempts:<9} {iso(r.received_at):<26} "
            f"{r.last_error or ''}\n"
        )
