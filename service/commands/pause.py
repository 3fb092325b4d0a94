"""`wiseflow-sync pause show|clear`: the pause WISEflow asked for (a Retry-After or maintenance), as saved.

The client saves every pause before its next request leaves, so that a restarted process honours it too.
`show` prints it: until when, why, and how long is left. `clear` forgets it, an operator's way out of a
bogus pause (a proxy's Retry-After of an hour, say): the next process starts without waiting, and a
process already running on the database (the service, a `sync --once`) sees the clear at its next look at
the saved pause, every few seconds while it is paused, and resumes (it logs `wiseflow.pause_cleared`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from service.adapters.store.pause import SqlitePauseStore
from service.adapters.wiseflow.pauses import CHECK_INTERVAL
from service.commands import iso, with_store
from service.core.clock import SystemClock
from service.core.ports import SavedPause


def register(subparsers: Any) -> None:
    """Add the `pause` command."""
    p = subparsers.add_parser("pause", help="show or lift the saved Retry-After / maintenance pause")
    sub = p.add_subparsers(dest="pause_command", metavar="ACTION")
    sub.required = True
    show = sub.add_parser("show", help="the saved pause: until when, why, how long is left")
    show.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    show.set_defaults(handler=run_show)
    clear = sub.add_parser("clear", help="lift the saved pause (running processes resume at their next check)")
    clear.set_defaults(handler=run_clear)


def run_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the saved pause; exit 0 whether or not there is one."""
    clock = SystemClock()
    saved = with_store(env, lambda store: SqlitePauseStore(store, clock), lambda p: p.load(), read_only=True)
    write_pause(saved, clock.wall(), args.format, sys.stdout)
    return 0


def run_clear(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Forget the saved pause; say what was lifted."""
    clock = SystemClock()
    before = with_store(env, lambda store: SqlitePauseStore(store, clock), lambda p: p.clear())
    if before is None or before.until <= clock.wall():
        print("no pause in force; nothing to lift")
    else:
        print(f"lifted the pause until {iso(before.until)} ({before.reason})")
        print(f"a service already running resumes at its next check (every {CHECK_INTERVAL:g} s while paused)")
    return 0


def write_pause(saved: SavedPause | None, now_wall: float, fmt: str, out: TextIO) -> None:
    """The pause as one text line, or one JSON object (`active`, `until`, `reason`, `remaining`, `savedAt`)."""
    active = saved is not None and saved.until > now_wall
    remaining = max(saved.until - now_wall, 0.0) if saved is not None else 0.0
    if fmt == "json":
        doc: dict[str, Any] = {"active": active, "remaining": round(remaining, 3)}
        if saved is not None:
            doc |= {"until": iso(saved.until), "reason": saved.reason, "savedAt": iso(saved.saved_at)}
        out.write(orjson.dumps(doc).decode() + "\n")
    elif saved is None:
        out.write("no pause saved\n")
    elif not active:
        out.write(f"no pause in force (the last one, {saved.reason}, ended at {iso(saved.until)})\n")
    else:
        out.write(f"paused until {iso(saved.until)} ({remaining:.0f} s left): {saved.reason}\n")
