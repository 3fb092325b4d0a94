"""`wiseflow-sync simulate`: the WISEflow simulator alone, until SIGINT or SIGTERM.

The simulator takes its credentials and webhook secret from the same environment variables as the service
(`WISEFLOW_CLIENT_ID`, `WISEFLOW_CLIENT_SECRET`, `WISEFLOW_API_KEY`, `WISEFLOW_WEBHOOK_SECRET`), so the two
agree without setup.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from service.adapters.http_server import stop_signal
from service.adapters.logs import configure_logging
from service.commands import add_allow_in_image, number_arg, refused_in_image
from service.settings import LOG_LEVELS
from service.simulator import SimConfig, build_simulator_app, make_sim_config
from service.simulator.app import SERVER_OPTIONS
from service.simulator.config import PROFILES, SHAPES, WEBHOOK_SCHEMES

EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add the `simulate` command."""
    p = subparsers.add_parser("simulate", help="run the WISEflow simulator (and the fake SIS) alone")
    p.add_argument(
        "--port",
        type=number_arg(int, "port", 0, 65535),
        default=8081,
        help="TCP port (default 8081; 0 picks one)",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    p.add_argument(
        "--profile", choices=PROFILES, default="calm", help="calm, or chaos (faults and a moving world)"
    )
    p.add_argument("--webhook-url", help="where to deliver webhooks (none by default)")
    p.add_argument("--webhook-scheme", choices=WEBHOOK_SCHEMES, help="signature scheme (default wiseflow)")
    p.add_argument(
        "--shapes",
        choices=SHAPES,
        help='success envelopes as the OpenAPI examples show them ("error": null; the default), '
        "or in the schema's own form (absent parts left out)",
    )
    p.add_argument(
        "--redelivery-interval",
        type=number_arg(float, "number of seconds", 0, above=True),
        help="seconds between redeliveries of a failed webhook (default 900, WISEflow's 15 minutes)",
    )
    p.add_argument("--flows", type=number_arg(int, "number", 1), help="number of flows (default 24)")
    p.add_argument(
        "--participants", type=number_arg(int, "number", 1), help="participants per flow (default 25)"
    )
    add_allow_in_image(p)
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> SimConfig:
    """The simulator config of the command line (flags win over the environment)."""
    overrides: dict[str, Any] = {"seed": args.seed}
    for name in ("webhook_url", "webhook_scheme", "redelivery_interval", "flows", "participants", "shapes"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return make_sim_config(args.profile, env, **overrides)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Serve the simulator until SIGINT or SIGTERM."""
    if refused_in_image("simulate", args, env):
        return EXIT_USAGE
    level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    problem = None if level in LOG_LEVELS else f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}"
    try:
        config = config_from_args(args, env)
    except ValueError as exc:
        problem = str(exc)
    if problem is not None:
        print(f"wiseflow-sync simulate: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level)
    try:
        asyncio.run(serve(config, args.host, args.port))
    except OSError as exc:
        print(
            f"wiseflow-sync simulate: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    return 0


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Run the simulator app on host:port until a stop signal arrives."""
    runner = web.AppRunner(build_simulator_app(config), handle_signals=False, **SERVER_OPTIONS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"WISEflow simulator on http://{host}:{bound}/v1 (profile {config.profile}, seed {config.seed})")
        sys.stdout.flush()
        await stop_signal()
    finally:
        await runner.cleanup()
