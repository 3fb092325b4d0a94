"""`wiseflow-sync demo [--duration S]`: simulator + service in one process on the embedded defaults."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from service.adapters.logs import configure_logging


def _duration(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {raw!r}") from None
    # 10 s: the shortest timeline in which every phase (storm, maintenance, reconciliation) fits.
    if not 10 <= value <= 3600:
        raise argparse.ArgumentTypeError("the duration must be between 10 and 3600 seconds")
    return value


def register(subparsers: Any) -> None:
    """Add the `demo` command."""
    p = subparsers.add_parser(
        "demo", help="run the service against the built-in simulator through faults, and print a summary"
    )
    p.add_argument("--duration", type=_duration, default=40.0, help="seconds (default 40)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the demo; exit 0 when the mirror and the SIS converged on the simulator's truth."""
    # WARNING by default: the demo prints its own timeline; breaker transitions and failures still show.
    configure_logging(env.get("LOG_LEVEL", "WARNING").upper())
    from service.demo import main  # the demo pulls in the simulator: only when asked for

    return main(args.duration)
