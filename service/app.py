"""The composition root: settings in, objects wired, aiohttp application out.

    build_app(settings) -> web.Application
      cleanup_ctx: open the service (runtime.open_service); start the loops; on shutdown cancel and
                   await them, flush the journal, close everything (spans are flushed by `run`).
      routes:      POST /webhooks/wiseflow, GET /livez, /readyz, /metrics, /status (adapters/ops_http)
      loops:       sync runs, inbox worker, outbox deliverer, catch-up, journal flush

Nothing here runs at import time. The same `Service` object serves `run`, `demo` and the e2e tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web
from opentelemetry import trace

from service import __version__
from service.adapters.ops_http import add_ops_routes, register_metrics, tracing_middleware, webhook
from service.adapters.webhook_http import WEBHOOK_PATH
from service.core import planner
from service.core.clock import Clock
from service.core.failures import Verdict, classify, describe, retry_after
from service.runtime import SERVICE, Service, close_service, open_service
from service.settings import Settings

__all__ = ["SERVICE", "Service", "build_app", "close_service", "open_service", "start_loops"]

log = logging.getLogger("service.app")

# Seconds between journal flushes: one commit per second at most for diagnosis data.
JOURNAL_FLUSH_INTERVAL: Final = 1.0
# After an interrupted run, wait at least this long (unless WISEflow said how long) before trying again.
MIN_RETRY_DELAY: Final = 30.0


def start_loops(service: Service) -> None:
    """Start the background loops: polling, inbox worker, outbox deliverer, catch-up, journal flush."""
    loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("poll", lambda: poll_loop(service)),
        ("inbox", service.worker.run),
        ("catchup", lambda: catchup_loop(service)),
        ("journal", lambda: journal_loop(service)),
    ]
    if service.deliverer is not None:
        loops.append(("outbox", service.deliverer.run))
    for name, loop in loops:
        service.tasks.append(asyncio.create_task(_guarded(name, loop), name=f"wiseflow-sync:{name}"))


async def _guarded(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a loop forever: a crash is logged and the loop restarted after a pause, never silently lost."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            context = {"event": "loop.crashed", "loop": name, "error": describe(exc)}
            if classify(exc) is Verdict.BLAME_ITEM:  # a bug: its traceback is what a reader needs
                log.exception("background loop crashed; restarting", extra=context)
            else:  # WISEflow or the database said wait: one line, and wait at least what was asked
                log.warning("background loop stopped; restarting", extra=context)
            await asyncio.sleep(max(MIN_RETRY_DELAY, retry_after(exc) or 0.0))
        else:
            return


async def poll_loop(service: Service) -> None:
    """Sync runs every `SYNC_POLL_INTERVAL` (jittered); an interrupted run is retried when WISEflow allows."""
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    interval = service.settings.poll_interval
    while True:
        blocked = service.client.breaker.retry_after()
        if blocked > 0:
            # While the breaker is open the loop skips its run: nothing could be sent, and the one probe
            # (this loop's next run, or the inbox worker's) decides when WISEflow is back.
            await asyncio.sleep(min(interval, blocked))
            continue
        summary = await service.run_sync()
        delay = planner.jittered(interval, 0.1, rng)
        if summary.outcome != "ok":
            delay = min(interval, max(MIN_RETRY_DELAY, summary.retry_after or 0.0))
        await asyncio.sleep(delay)


async def catchup_loop(service: Service) -> None:
    """Detect a blind gap at startup, then keep checking."""
    await service.catchup.start()
    await service.catchup.run()


async def journal_loop(service: Service) -> None:
    """Flush the request journal once a second, and persist a pause WISEflow asked for."""
    while True:
        await asyncio.sleep(JOURNAL_FLUSH_INTERVAL)
        await service.journal.flush()
        await service.save_not_before()


def build_app(
    settings: Settings,
    clock: Clock | None = None,
    *,
    start: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
) -> web.Application:
    """The service's aiohttp application; `start=False` wires everything but runs no background loop.

    Spans go to `tracer_provider`, or to the global provider that `setup_tracing` installs.
    """
    tracer = trace.get_tracer("service.app", __version__, tracer_provider=tracer_provider)
    # No route of ours takes a body larger than a webhook's (the receiver enforces its own bound too).
    app = web.Application(client_max_size=settings.webhook_max_body, middlewares=[tracing_middleware(tracer)])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = await open_service(settings, clock, tracer_provider)
        app[SERVICE] = service
        register_metrics(service)
        if start:
            start_loops(service)
        log.info(
            "wiseflow-sync started",
            extra={"event": "service.started", "version": __version__, "api_url": settings.api_url},
        )
        yield
        await close_service(service)
        log.info("wiseflow-sync stopped", extra={"event": "service.stopped"})

    async def on_shutdown(app: web.Application) -> None:
        # Readiness goes false first, so the load balancer stops sending while we drain.
        with contextlib.suppress(KeyError):
            app[SERVICE].shutting_down = True

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    add_ops_routes(app)
    # The router is frozen before startup, but the receiver exists only once the store is open.
    app.router.add_route("*", WEBHOOK_PATH, webhook)  # the receiver answers other methods with a JSON 405
    return app
