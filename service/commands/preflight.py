"""`wiseflow-sync preflight [--format md|json] [--public-url URL]`: check WISEflow (staging) before the review.

Read-only toward the institution's data and the service's database (which it never opens). With
`--public-url` it listens on `SYNC_HTTP_HOST:SYNC_HTTP_PORT` for WISEflow's test delivery on a temporary
subscription it deletes afterwards. Exit 0 when no check that ran failed, 1 otherwise, 2 for a bad setting.
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
        "preflight", help="check the configured WISEflow and the assumptions of the defaults (read-only)"
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
