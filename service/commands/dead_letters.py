"""The dead letters of a queue, listed and replayed: one protocol and one rendering for `inbox` and `outbox`.

    wiseflow-sync inbox dead-letters [--format text|json]    webhook events that failed for good
    wiseflow-sync inbox replay ID|--all                      (ID: the event's id, as listed)
    wiseflow-sync outbox dead-letters [--format text|json]   grade deliveries the SIS refused for good
    wiseflow-sync outbox replay ID|--all                     (ID: the outbox row's id)

A listing shows what failed, where and why, never an event's body or a grade. `replay` re-queues with a
fresh count (attempts, refusals); the running service picks the items up on its next pass. An item a newer
one supersedes is not replayed and is reported so (an outbox row whose participant has a newer grade
queued or delivered: the SIS would receive the older grade last); nothing supersedes a webhook event, whose
refresh fetches the current state. Replaying is safe to repeat; an ID that names nothing exits 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson

from service.adapters.store.unit import SqliteUnitOfWork
from service.commands import MAX_ROW_ID, iso, number_arg, with_store
from service.core.store_ports import DeadLetter, DeadLetters, Replay, Unit

# One line of a text listing: its columns, wide enough for the longest event name and an ISO time.
_LINE: Final = "{:<9} {:<21} {:<9} {:<12} {:<9} {:<26} {}\n"


@dataclass(frozen=True, slots=True)
class Queue:
    """One queue's command: its name, what its items are, and its repository of a unit."""

    name: str  # the command: inbox | outbox
    items: str  # what its items are, for --help: "webhook events"
    item: str  # one item, as a replay names it: "event"
    requeued: str  # what a replay re-queued, after the count: "event(s); the service's inbox worker ..."
    repository: Callable[[Unit], DeadLetters]

    def register(self, subparsers: Any) -> None:
        """Add the command: `<name> dead-letters` and `<name> replay ID|--all`."""
        p = subparsers.add_parser(
            self.name, help=f"list or replay {self.items} that failed for good (dead letters)"
        )
        sub = p.add_subparsers(dest=f"{self.name}_command", metavar="ACTION")
        sub.required = True
        dead = sub.add_parser("dead-letters", help=f"list dead {self.items}")
        dead.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
        dead.set_defaults(handler=functools.partial(run_dead_letters, self))
        replay = sub.add_parser("replay", help=f"re-queue dead {self.items} (safe to repeat)")
        which = replay.add_mutually_exclusive_group(required=True)
        item_id = number_arg(int, "id", 0, MAX_ROW_ID)
        which.add_argument("id", nargs="?", type=item_id, metavar="ID", help=f"the dead {self.item}'s id")
        which.add_argument("--all", action="store_true", help="every dead letter")
        replay.set_defaults(handler=functools.partial(run_replay, self))


def run_dead_letters(queue: Queue, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the dead letters; exit 0 (an empty list is good news)."""

    async def listing(uow: SqliteUnitOfWork) -> list[DeadLetter]:
        async with uow.read() as unit:
            return await queue.repository(unit).dead_letters()

    rows = with_store(env, SqliteUnitOfWork, listing, read_only=True)
    write_dead_letters(rows, args.format, sys.stdout)
    return 0


def run_replay(queue: Queue, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Re-queue; exit 1 only when the ID names nothing at all."""
    item_id = None if args.all else args.id

    async def replay(uow: SqliteUnitOfWork) -> Replay:
        async with uow.transaction() as unit:
            return await queue.repository(unit).replay(item_id)

    return write_replay(queue, item_id, with_store(env, SqliteUnitOfWork, replay), sys.stdout, sys.stderr)


def write_replay(queue: Queue, item_id: int | None, outcome: Replay, out: TextIO, err: TextIO) -> int:
    """Say what a replay did, the same way for every queue; the exit code."""
    if item_id is not None and outcome.status is None:
        err.write(f"wiseflow-sync {queue.name} replay: no {queue.item} with id {item_id}\n")
        return 1
    if outcome.requeued:
        out.write(f"re-queued {outcome.requeued} {queue.requeued}\n")
    if outcome.superseded:  # only a grade can be: an event's refresh fetches the current state
        out.write(f"left {outcome.superseded} dead: a newer grade of the same participant supersedes it\n")
    if outcome.requeued or outcome.superseded:
        return 0
    if item_id is None:
        out.write("no dead letters to replay\n")
    else:
        out.write(f"{queue.item} {item_id} is {outcome.status}: nothing to replay\n")
    return 0


def write_dead_letters(rows: list[DeadLetter], fmt: str, out: TextIO) -> None:
    """Write the dead letters as text lines (with a header) or one JSON document."""
    if fmt == "json":
        doc = [
            {
                "id": r.id,
                "item": r.item,
                "flowId": r.flow_id,
                "participantId": r.participant_id,
                "attempts": r.attempts,
                "lastError": r.last_error,
                "since": iso(r.since),
            }
            for r in rows
        ]
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not rows:
        out.write("no dead letters\n")
        return
    out.write(_LINE.format("ID", "ITEM", "FLOW", "PARTICIPANT", "ATTEMPTS", "SINCE", "LAST ERROR"))
    for r in rows:
        flow = "-" if r.flow_id is None else r.flow_id
        participant = "-" if r.participant_id is None else r.participant_id
        out.write(_LINE.format(r.id, r.item, flow, participant, r.attempts, iso(r.since), r.last_error or ""))
