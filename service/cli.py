"""The `wiseflow-sync` command: parses arguments, loads settings once, dispatches to a command module.

Each command lives in `service/commands/<name>.py` with `register(subparsers)`, which adds its parser and
sets `handler(args, env) -> int`. A bad flag or setting prints one line and exits 2; a database another
process keeps locked one line and 75; a reader that stops early (`| head`) ends it quietly with 141.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from service import __version__
from service.adapters.store.files import is_busy
from service.commands import EXIT_PAUSED
from service.errors import ConfigError, DatabaseBusy, StoreError, WiseflowPaused

# The commands of the README's commands table, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "run", "sync", "simulate", "demo", "export", "diagnose", "certify", "inbox", "outbox", "webhooks",
    "preflight", "pause", "backup", "spec", "runs",
)  # fmt: skip

EXIT_USAGE = 2
# EX_TEMPFAIL (sysexits.h), as for a WISEflow pause: another process holds the database; try again later.
EXIT_BUSY = EXIT_PAUSED
# 128 + SIGPIPE, what a shell reports for a writer whose reader went away (`| head`).
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every registered command."""
    parser = _Parser(
        prog="wiseflow-sync",
        description="Integration service between an institution's systems and UNIwise WISEflow.",
    )
    parser.add_argument("--version", action="version", version=f"wiseflow-sync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"service.commands.{name}")
        module.register(sub)
    return parser


def describe_exit(exc: ConfigError | StoreError | sqlite3.Error) -> str:
    """The one line for an error that stops a command, naming the setting to look at.

    Every command maps each error class to the same exit code: a bad setting and a database that cannot be
    used (not SQLite, a newer schema, read-only, a missing folder) both exit 2 (EXIT_USAGE).
    """
    return str(exc) if isinstance(exc, ConfigError) else f"SYNC_DATABASE: {exc}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code. Every failure is one line on stderr and a code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ) if env is None else env
    try:
        code: int = args.handler(args, environ)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not in the interpreter's last flush
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ConfigError, StoreError, sqlite3.Error) as exc:
        if is_busy(exc):
            # Another process (a long write, a stuck sqlite3 shell) holds the write lock: not a setting.
            print(f"wiseflow-sync: {_busy_line(exc)}", file=sys.stderr)
            return EXIT_BUSY
        print(f"wiseflow-sync: configuration error: {describe_exit(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except WiseflowPaused as exc:  # a command met a saved pause longer than SYNC_MAX_WAIT, as `sync --once` can
        print(f"wiseflow-sync {exc.command}: {exc}", file=sys.stderr)
        return EXIT_PAUSED
    except KeyboardInterrupt:
        return 130
    return code


def _busy_line(exc: BaseException) -> str:
    """What to say about a locked database: the store's own line when it made one."""
    if isinstance(exc, DatabaseBusy):
        return str(exc)
    return "the database (SYNC_DATABASE) is locked by another process; try again"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not raise BrokenPipeError again.

    The Python documentation's recipe (signal module, "Note on SIGPIPE"): the reader is gone, nothing more
    can reach it, and the exit code says so.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's capture): nothing will flush to the pipe
        pass
