"""`wiseflow-sync demo [--duration S]`: simulator + service in one process on the embedded defaults."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from service.adapters.logs import configure_logging
from service.adapters.telemetry import command_tracing
from service.commands import add_allow_in_image, number_arg, refused_in_image
from service.settings import load_settings


def register(subparsers: Any) -> None:
    """Add the `demo` command."""
    p = subparsers.add_parser(
        "demo", help="run the service against the built-in simulator through faults, and print a summary"
    )
    # 10 s: the shortest timeline in which every phase (storm, maintenance, reconciliation) fits.
    duration = number_arg(float, "duration", 10, 3600)
    p.add_argument("--duration", type=duration, default=40.0, help="seconds, 10 to 3600 (default 40)")
    add_allow_in_image(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the demo; exit 0 when the mirror and the SIS converged on the simulator's truth."""
    if refused_in_image("demo", args, env):
        return 2
    # WARNING by default: the demo prints its own timeline; breaker transitions and failures still show.
    configure_logging(env.get("LOG_LEVEL", "WARNING").upper())
    from service.demo import main  # the demo pulls in the simulator: only when asked for

    # The demo's service runs on embedded settings; only where its spans go comes from the environment.
    otel = load_settings({k: v for k, v in env.items() if k.startswith("OTEL_")})
    with command_tracing(otel, env):
        return main(args.duration)
