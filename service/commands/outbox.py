"""`wiseflow-sync outbox dead-letters` and `outbox replay ID|--all`: grade deliveries the SIS refused for good.

`dead-letters` lists them (row id, flow, participant, attempts, last error; never the grade). `replay`
re-queues one or all of them with a fresh count of refusals; the running service's deliverer (or the
next `sync --once`) sends them. A dead row whose participant has a newer version queued or delivered is
not replayed: the SIS would receive an older grade after the newer one. Replaying is safe to repeat.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from service.adapters.store.outbox import DeadLetter, Outbox
from service.commands import iso, with_store


def register(subparsers: Any) -> None:
    """Add the `outbox` command."""
    p = subparsers.add_parser("outbox", help="list or replay grade deliveries the SIS refused (dead letters)")
    sub = p.add_subparsers(dest="outbox_command", metavar="ACTION")
    sub.required = True
    dead = sub.add_parser("dead-letters", help="list grade deliveries the SIS refused for good")
    dead.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    dead.set_defaults(handler=run_dead_letters)
    replay = sub.add_parser("replay", help="re-queue dead grade deliveries (safe to repeat)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("row", nargs="?", type=int, metavar="ID", help="the dead letter's id")
    which.add_argument("--all", action="store_true", help="every dead letter")
    replay.set_defaults(handler=run_replay)


def run_dead_letters(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the dead letters; exit 0 (an empty list is good news)."""
    rows = with_store(env, Outbox, lambda outbox: outbox.dead_letters())
    write_dead_letters(rows, args.format, sys.stdout)
    return 0


def run_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Re-queue; exit 1 only when the ID names no outbox row at all."""
    row_id = None if args.all else args.row
    outcome = with_store(env, Outbox, lambda outbox: outbox.replay(row_id))
    if row_id is not None and outcome.status is None:
        print(f"wiseflow-sync outbox replay: no outbox row with id {row_id}", file=sys.stderr)
        return 1
    if outcome.requeued:
        print(f"re-queued {outcome.requeued} grade delivery(ies); the deliverer sends them next")
    if outcome.superseded:
        print(f"left {outcome.superseded} dead: a newer grade of the same participant supersedes it")
    if not outcome.requeued and not outcome.superseded:
        print(
            "no dead letters to replay"
            if row_id is None
            else f"row {row_id} is {outcome.status}: nothing to replay"
        )
    return 0


def write_dead_letters(rows: list[DeadLetter], fmt: str, out: TextIO) -> None:
    """Write the dead letters as text lines (with a header) or one JSON document."""
    if fmt == "json":
        doc = [
            {
                "id": r.id,
                "flowId": r.flow_id,
                "participantId": r.participant_id,
                "attempts": r.attempts,
                "lastError": r.last_error,
                "createdAt": iso(r.created_at),
            }
            for r in rows
        ]
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not rows:
        out.write("no dead letters\n")
        return
    out.write("ID        FLOW      PARTICIPANT  ATTEMPTS  QUEUED                     LAST ERROR\n")
    for r in rows:
        out.write(
            f"{r.id:<9} {r.flow_id:<9} {r.participant_id:<12} {r.attempts:<9} {iso(r.created_at):<26} "
            f"{r.last_error or ''}\n"
        )
