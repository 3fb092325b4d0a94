"""`wiseflow-sync run`: the service (webhook server + loops) until SIGTERM, then a graceful drain."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from service.adapters.http_server import Connections, serve
from service.adapters.logs import configure_logging
from service.adapters.telemetry import setup_tracing
from service.app import SERVICE, build_app
from service.errors import ConfigError
from service.settings import load_settings, startup_warnings

# Kubernetes' 30 s grace period also covers the pod's 5 s preStop pause: 15 s to drain requests, 5 s to
# flush spans, and the rest for the loops and the database to close.
SHUTDOWN_TIMEOUT: Final = 15.0
SPAN_FLUSH_TIMEOUT: Final = 5.0


def register(subparsers: Any) -> None:
    """Add the `run` command."""
    p = subparsers.add_parser("run", help="run the service: webhook endpoint, sync loops, outbox delivery")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Serve until SIGINT/SIGTERM (stop accepting, drain requests, run the cleanup contexts), within the
    server limits of `adapters/http_server` (headers, time, connections; bodies in the receiver)."""
    settings = load_settings(env)
    settings.require_api_credentials()
    settings.require_sink_authentication()
    configure_logging(settings.log_level)
    tracing = setup_tracing(settings, env=env)
    for warning in startup_warnings(settings):
        logging.getLogger("service.run").warning(warning, extra={"event": "config.warning"})
    app = build_app(settings, tracer_provider=tracing.provider)

    async def flush_spans(_: web.Application) -> None:
        await tracing.aclose(SPAN_FLUSH_TIMEOUT)

    app.on_cleanup.append(flush_spans)

    def count_shed() -> None:  # a connection closed at the cap: counted with the webhook rejections
        if SERVICE in app:
            app[SERVICE].figures.reject("connection_shed")

    connections = Connections(on_shed=count_shed)
    try:
        asyncio.run(serve(app, settings.http_host, settings.http_port, SHUTDOWN_TIMEOUT, connections))
    except OSError as exc:  # the address: unknown host, port in use, no permission
        where = f"{settings.http_host}:{settings.http_port}"
        reason = exc.strerror or type(exc).__name__
        raise ConfigError("SYNC_HTTP_HOST/SYNC_HTTP_PORT", f"cannot listen on {where}: {reason}") from exc
    finally:
        tracing.shutdown(SPAN_FLUSH_TIMEOUT)  # a second shutdown after a clean exit does nothing
    return 0
