"""`wiseflow-sync certify [--format md|json]`: the certification review's answers, from config and figures.

The events answer comes from WISEflow's own subscription (`GET /webhooks`, the one for
`SYNC_PUBLIC_WEBHOOK_URL` or titled `WISEFLOW_CLIENT_NAME`) when credentials are configured and WISEflow
answers within `EVENTS_TIMEOUT`; otherwise from `SYNC_WEBHOOK_EVENTS`. `webhooks.events_source` says which.

That request is optional, so certify never waits for WISEflow: while a saved pause is in force (a
Retry-After or a maintenance window, `pause show`) it sends nothing and answers from `SYNC_WEBHOOK_EVENTS`,
as when WISEflow does not answer. Its client is every command's (`service.clients`): with an existing
SYNC_DATABASE the request is journalled there (`diagnose` finds it); no database is ever created.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from service.adapters.logs import configure_logging
from service.adapters.store.figures import StoredFigures
from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.telemetry import command_tracing
from service.certify import EVENTS_FROM_WISEFLOW, build, render_markdown
from service.clients import command_client
from service.commands import opened
from service.core.subscriptions import plan_subscription
from service.errors import ServiceError
from service.settings import Settings, load_settings

# Seconds certify waits for WISEflow's subscription before answering from the settings instead.
EVENTS_TIMEOUT: Final = 10.0
log = logging.getLogger("service.certify")


def register(subparsers: Any) -> None:
    """Add the `certify` command."""
    p = subparsers.add_parser(
        "certify",
        help="print the certification review's answers (config + figures)",
        description="Print the certification review's answers from the configuration and the database's"
        " figures. The webhook events are read from WISEflow's subscription (GET /webhooks). Certify never"
        " waits for WISEflow: while a saved pause is in force (`pause show`) it sends nothing, and then, as"
        f" when WISEflow does not answer within {EVENTS_TIMEOUT:g} s, the events come from"
        " SYNC_WEBHOOK_EVENTS (webhooks.events_source says which).",
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the document; measured figures are included when the database exists."""
    settings = load_settings(env)
    configure_logging(settings.log_level)
    # Never create a database just to report that it is empty.
    exists = Path(settings.database).is_file()
    with command_tracing(settings, env, root="certify"):
        figures, events = asyncio.run(_gather(settings, exists))
    document = build(settings, figures, events, EVENTS_FROM_WISEFLOW)
    if args.format == "json":
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_markdown(document))
    return 0


async def _gather(settings: Settings, exists: bool) -> tuple[StoredFigures | None, list[str] | None]:
    figures = await _figures(settings) if exists else None
    return figures, await subscribed_events(settings)


async def _figures(settings: Settings) -> StoredFigures:
    async with opened(settings.database, read_only=True) as store, SqliteUnitOfWork(store).read() as unit:
        return await unit.figures.stored()


async def subscribed_events(settings: Settings) -> list[str] | None:
    """The events of our subscription at WISEflow; None when it cannot be asked or has none for us."""
    if not (settings.uses_oauth or settings.api_key is not None):
        return None
    try:
        # wait=False: a saved pause in force is WiseflowPaused at once, answered like no answer. read_only:
        # certify reads the database (it may be a backup, of an older schema) and never migrates or writes it.
        reading = command_client(settings, "certify", read_only=True, wait=False)
        async with asyncio.timeout(EVENTS_TIMEOUT), reading as client:
            existing = await client.list_webhooks()
    except (ServiceError, TimeoutError) as exc:
        log.warning(
            "WISEflow's subscription could not be read; events from SYNC_WEBHOOK_EVENTS",
            extra={"event": "certify.events_unavailable", "reason": type(exc).__name__},
        )
        return None
    plan = plan_subscription(
        existing,
        url=settings.public_webhook_url or "",
        events=settings.webhook_events,
        title=settings.client_name,
        secret=None,
    )
    if plan.webhook_id is None:
        return None
    ours = next((w for w in existing if isinstance(w, dict) and w.get("id") == plan.webhook_id), {})
    events = ours.get("events")
    if not isinstance(events, list):
        return None
    return sorted(e for e in events if isinstance(e, str))
