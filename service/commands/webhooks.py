"""`wiseflow-sync webhooks ensure`: make WISEflow's subscription match our URL and events; idempotent.

The URL is `--url` or `SYNC_PUBLIC_WEBHOOK_URL` (the public https address of `POST /webhooks/wiseflow`);
the events are `--events` or `SYNC_WEBHOOK_EVENTS` (comma-separated), by default every event WISEflow
sends. A new subscription is given the first secret of `WISEFLOW_WEBHOOK_SECRET`. Prints one line:
created, updated or unchanged (`--dry-run` says what it would do and sends nothing but `GET /webhooks`).

Its client is every command's (`service.clients`): with an existing SYNC_DATABASE its requests are
journalled there (`diagnose` finds them) and a saved pause is waited out first, up to SYNC_MAX_WAIT, or it
exits 75 naming the pause, having sent nothing. It never creates a database.

`--rotate-secret` gives WISEflow the first secret of `WISEFLOW_WEBHOOK_SECRET="new,old"`: WISEflow neither
shows a secret nor changes one in place, so ours is replaced by a new subscription (created first, the old
one deleted after), and the service, accepting both secrets meanwhile, loses nothing. docs/security.md,
"Rotating the webhook secret", has the whole procedure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

from service.adapters.logs import configure_logging
from service.adapters.telemetry import command_tracing
from service.adapters.wiseflow import WiseflowClient
from service.clients import command_client
from service.core.redact import redact_url
from service.core.subscriptions import SubscriptionPlan, plan_subscription
from service.errors import ConfigError, ServiceError, WiseflowPaused
from service.settings import Settings, load_settings, parse_webhook_events, parse_webhook_url

URL_VARIABLE: Final = "SYNC_PUBLIC_WEBHOOK_URL"
EVENTS_VARIABLE: Final = "SYNC_WEBHOOK_EVENTS"


def register(subparsers: Any) -> None:
    """Add the `webhooks` command."""
    p = subparsers.add_parser("webhooks", help="manage WISEflow's webhook subscription")
    sub = p.add_subparsers(dest="webhooks_command", metavar="ACTION")
    sub.required = True
    ensure = sub.add_parser(
        "ensure",
        help="create or update the subscription to match the configuration",
        description="Create or update WISEflow's webhook subscription to match the configuration. A saved"
        " pause (a Retry-After or a maintenance window, `pause show`) is waited out first, up to"
        " SYNC_MAX_WAIT; a longer one ends the command with exit 75, nothing sent. With an existing"
        " SYNC_DATABASE the requests are journalled there (`diagnose X_TRACE_ID` finds them).",
    )
    ensure.add_argument("--url", help=f"public webhook URL (default: ${URL_VARIABLE})")
    ensure.add_argument("--events", help=f"comma-separated events (default: ${EVENTS_VARIABLE} or all)")
    ensure.add_argument("--dry-run", action="store_true", help="only say what would change")
    ensure.add_argument(
        "--rotate-secret",
        action="store_true",
        help="replace the subscription by one signed with the first of WISEFLOW_WEBHOOK_SECRET=new,old",
    )
    ensure.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Load the settings, reconcile the subscription, print one line; 1 when WISEflow refused."""
    settings = load_settings(env)
    settings.require_api_credentials()
    configure_logging(settings.log_level)
    url = parse_webhook_url("--url", args.url) if args.url else settings.public_webhook_url
    if url is None:
        raise ConfigError(URL_VARIABLE, "missing: set it (or pass --url) to the public webhook URL")
    events = parse_webhook_events("--events", args.events) if args.events else settings.webhook_events
    if not settings.webhook_secrets:
        raise ConfigError("WISEFLOW_WEBHOOK_SECRET", "missing: webhooks cannot be verified without it")
    if args.rotate_secret and len(settings.webhook_secrets) < 2:
        raise ConfigError(
            "WISEFLOW_WEBHOOK_SECRET",
            "rotating needs the new and the old secret (new,old), so that deliveries the old subscription "
            "still sends verify until they stop (docs/security.md)",
        )
    with command_tracing(settings, env, root="webhooks.ensure"):
        return asyncio.run(
            ensure(settings, url, events, dry_run=args.dry_run, out=sys.stdout, rotate=args.rotate_secret)
        )


async def ensure(
    settings: Settings,
    url: str,
    events: Sequence[str],
    *,
    dry_run: bool,
    out: TextIO,
    rotate: bool = False,
) -> int:
    """Reconcile with WISEflow through the client (`rotate`: with a new secret); returns the exit code."""
    try:
        async with command_client(settings, "webhooks ensure") as client:
            plan = plan_subscription(
                await client.list_webhooks(),
                url=url,
                events=events,
                title=settings.client_name,
                secret=settings.webhook_secrets[0].reveal(),
                rotate=rotate,
            )
            webhook_id = None if plan.action == "rotate" else plan.webhook_id  # rotating: a new one
            if not dry_run and plan.action in ("create", "rotate"):
                created = await client.create_webhook(plan.body)
                webhook_id = created["id"] if isinstance(created.get("id"), int) else None
            elif not dry_run and plan.action == "update" and webhook_id is not None:
                await client.update_webhook(webhook_id, plan.body)
            if not dry_run and plan.action == "rotate" and plan.webhook_id is not None:
                await _retire(client, plan.webhook_id, webhook_id)
    except WiseflowPaused:
        raise  # the CLI's exit 75, like `sync --once` on a pause
    except ServiceError as exc:
        print(f"wiseflow-sync webhooks ensure: {exc}", file=sys.stderr)
        return 1
    out.write(describe(plan, webhook_id, url, events, dry_run=dry_run) + "\n")
    return 0


async def _retire(client: WiseflowClient, old_id: int, new_id: int | None) -> None:
    """Delete the subscription a rotation replaced; if WISEflow refuses, say which one is left, and why."""
    try:
        await client.delete_webhook(old_id)
    except ServiceError as exc:
        raise ServiceError(
            f"subscription {new_id} (new secret) was created but the old one, {old_id}, could not be "
            f"deleted: delete it in WISEflow (both deliver meanwhile; the inbox absorbs the duplicates): {exc}"
        ) from exc


def describe(
    plan: SubscriptionPlan, webhook_id: int | None, url: str, events: Sequence[str], *, dry_run: bool
) -> str:
    """The one line the command prints (the URL redacted, the secret never)."""
    verb = {"create": "created", "update": "updated", "rotate": "replaced", "ok": "unchanged"}[plan.action]
    if dry_run and plan.action != "ok":
        verb = f"would be {verb}"
    ident = "new" if webhook_id is None else str(webhook_id)
    line = f"webhook subscription {verb}: id={ident} url={redact_url(url)} events={','.join(sorted(events))}"
    if plan.action == "rotate":
        line += f" (new secret; subscription {plan.webhook_id} {'would be ' if dry_run else ''}deleted)"
    if plan.duplicates:
        ids = ", ".join(str(i) for i in plan.duplicates)
        line += f" (warning: subscription(s) {ids} also deliver to this URL; the inbox absorbs the duplicates)"
    return line
