"""The `wiseflow-sync` command: parses arguments, loads settings once, dispatches to a command module.

Each command lives in `service/commands/<name>.py` with `register(subparsers)`, which adds its parser and
sets `handler(args, env) -> int`. A bad flag or setting prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from service import __version__
from service.commands import EXIT_PAUSED
from service.errors import ConfigError, StoreError, WiseflowPaused

# The commands of the README's commands table, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "run", "sync", "simulate", "demo", "export", "diagnose", "certify", "inbox", "outbox", "webhooks",
    "preflight", "pause", "backup", "spec", "runs",
)  # fmt: skip

EXIT_USAGE = 2


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


def describe_exit(exc: ConfigError | StoreError) -> str:
    """The one line for an error that stops a command, naming the setting to look at.

    Every command maps each error class to the same exit code: a bad setting and a database that cannot be
    used (not SQLite, a newer schema, read-only, a missing folder) both exit 2 (EXIT_USAGE).
    """
    return str(exc) if isinstance(exc, ConfigError) else f"SYNC_DATABASE: {exc}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ) if env is None else env
    try:
        code: int = args.handler(args, environ)
    except (ConfigError, StoreError) as exc:
        print(f"wiseflow-sync: configuration error: {describe_exit(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except WiseflowPaused as exc:  # a command met a saved pause longer than SYNC_MAX_WAIT, as `sync --once` can
        print(f"wiseflow-sync {exc.command}: {exc}", file=sys.stderr)
        return EXIT_PAUSED
    except KeyboardInterrupt:
        return 130
    return code
