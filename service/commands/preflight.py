"""`wiseflow-sync preflight [--format md|json] [--public-url URL]`: check WISEflow (staging) before the review.

Read-only toward the institution's data and the service's database: it reads an existing one's saved
pause (waited out up to SYNC_MAX_WAIT before any request) and never writes or creates one. With
`--public-url` it listens on `SYNC_HTTP_HOST:SYNC_HTTP_PORT` for WISEflow's test delivery on a temporary
subscription it deletes afterwards. Exit 0 when no check that ran failed, 1 otherwise, 2 for a bad setting,
75 when a saved pause outlasts SYNC_MAX_WAIT (nothing sent).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, Final

from service.adapters.logs import configure_logging
from service.adapters.telemetry import command_tracing
from service.settings import load_settings, parse_webhook_url

FORMATS: Final = ("md", "json")


def register(subparsers: Any) -> None:
    """Add the `preflight` command."""
    p = subparsers.add_parser(
        "preflight",
        help="check the configured WISEflow and the assumptions of the defaults (read-only)",
        description="Check the configured WISEflow and the assumptions of the defaults. Read-only: an existing"
        " SYNC_DATABASE is only read, for its saved pause (a Retry-After or a maintenance window), which is"
        " waited out first, up to SYNC_MAX_WAIT; a longer one ends the command with exit 75, nothing sent.",
    )
    p.add_argument("--format", choices=FORMATS, default="md", help="md (a report to attach) or json")
    p.add_argument(
        "--public-url",
        help="an https URL reaching SYNC_HTTP_HOST:SYNC_HTTP_PORT: observe WISEflow's test webhook there",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run every check, print the report on stdout; 0 when no check that ran failed."""
    settings = load_settings(env)
    settings.require_api_credentials()
    configure_logging(settings.log_level)
    public_url = parse_webhook_url("--public-url", args.public_url) if args.public_url else None
    # Imported on use: the schema validator behind it takes seconds to load, which no other command pays.
    from service.preflight import render, run_preflight

    with command_tracing(settings, env, root="preflight"):
        report = asyncio.run(run_preflight(settings, public_url))
    sys.stdout.write(render(report, args.format))
    return 0 if report.passed else 1
