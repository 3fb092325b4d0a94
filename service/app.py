"""The composition root: settings in, objects wired, aiohttp application out.

    build_app(settings) -> web.Application
      cleanup_ctx: open the store, the WISEflow client, the sink; start the loops; on shutdown cancel
                   and await them, flush the journal, close everything, flush spans.
      routes:      POST /webhooks/wiseflow, GET /livez, /readyz, /metrics, /status

Nothing here runs at import time. The same `Service` object serves `run`, `demo` and the e2e tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import trace

from service import __version__
from service.adapters import metrics as prom
from service.adapters.sink import HttpSink
from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.store.journal import JournalWriter
from service.adapters.webhook_http import WEBHOOK_PATH, WebhookReceiver
from service.adapters.wiseflow.client import WiseflowClient
from service.core import planner
from service.core.clock import Clock, SystemClock
from service.core.webhook_figures import WebhookFigures
from service.settings import Settings
from service.sync.catchup import CatchUp
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller, Progress, RunSummary

log = logging.getLogger("service.app")

# Seconds between journal flushes: one commit per second at most for diagnosis data.
JOURNAL_FLUSH_INTERVAL: Final = 1.0
# After an interrupted run, wait at least this long (unless WISEflow said how long) before trying again.
MIN_RETRY_DELAY: Final = 30.0


@dataclass(slots=True)
class Service:
    """Every long-lived object of one process, wired once."""

    settings: Settings
    clock: Clock
    store: Store
    client: WiseflowClient
    session: aiohttp.ClientSession
    poller: Poller
    inbox: Inbox
    receiver: WebhookReceiver
    worker: InboxWorker
    catchup: CatchUp
    journal: JournalWriter
    figures: WebhookFigures
    deliverer: OutboxDeliverer | None
    metrics: prom.Metrics = field(default_factory=prom.Metrics)
    last_run: RunSummary | None = None
    runs: int = 0
    shutting_down: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run_sync(self, *, full: bool = False) -> RunSummary:
        """One sync run (`full`: every live flow, due or not), then wake the deliverer for what it queued."""
        summary = await self.poller.run_once(full=full)
        self.last_run = summary
        self.runs += 1
        if self.deliverer is not None and summary.changes:
            self.deliverer.wake()
        return summary


SERVICE: Final = web.AppKey("service", Service)


class _WakingRefresher:
    """The poller as the inbox worker's refresher, waking the deliverer after a grade refresh."""

    def __init__(self, poller: Poller, deliverer: OutboxDeliverer | None) -> None:
        self._poller = poller
        self._deliverer = deliverer

    async def refresh_flow(self, flow_id: int) -> None:
        await self._poller.refresh_flow(flow_id)

    async def refresh_assessments(self, flow_id: int) -> None:
        await self._poller.refresh_assessments(flow_id)
        if self._deliverer is not None:
            self._deliverer.wake()

    async def refresh_participants(self, flow_id: int) -> None:
        await self._poller.refresh_participants(flow_id)


async def open_service(
    settings: Settings,
    clock: Clock | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Service:
    """Open the store and the clients and wire every component (no loop is started).

    The one wiring of the process: `run`, `sync --once` and `demo` all get their objects here.
    """
    settings.require_api_credentials()
    clock = clock or SystemClock()
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    store = await Store.open(settings.database)
    session = aiohttp.ClientSession()
    journal = JournalWriter(store)
    tracer = trace.get_tracer("service.adapters.wiseflow", __version__, tracer_provider=tracer_provider)
    client = WiseflowClient(settings, session, clock, rng, on_request=journal.record, tracer=tracer)
    deliverer = None
    if settings.sink_url is not None:
        sink = HttpSink(settings.sink_url, session, client_name=settings.client_name)
        deliverer = OutboxDeliverer(store, sink, clock, rng)
    poller = Poller(
        client,
        store,
        clock,
        rng,
        planner.PlanPolicy.from_settings(settings),
        concurrency=settings.concurrency,
        outbox_enabled=deliverer is not None,
        on_progress=on_progress,
    )
    figures = WebhookFigures()
    inbox = Inbox(store)
    refresher = _WakingRefresher(poller, deliverer)
    worker = InboxWorker(
        inbox,
        refresher,
        clock,
        WorkerPolicy(max_attempts=settings.webhook_max_attempts, concurrency=settings.concurrency),
        figures,
        rng,
    )
    receiver = WebhookReceiver.from_settings(settings, inbox, clock, figures, on_stored=worker.wake)
    catchup = CatchUp(store, inbox, refresher, clock)
    service = Service(
        settings=settings,
        clock=clock,
        store=store,
        client=client,
        session=session,
        poller=poller,
        inbox=inbox,
        receiver=receiver,
        worker=worker,
        catchup=catchup,
        journal=journal,
        figures=figures,
        deliverer=deliverer,
    )
    register_metrics(service)
    return service


async def close_service(service: Service) -> None:
    """Stop the loops, write what is buffered, close connections."""
    service.shutting_down = True
    for task in service.tasks:
        task.cancel()
    await asyncio.gather(*service.tasks, return_exceptions=True)
    service.tasks.clear()
    await service.journal.close()
    await service.client.close()
    await service.session.close()
    await service.store.close()


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
        except Exception:
            log.exception("background loop crashed; restarting", extra={"event": "loop.crashed", "loop": name})
            await asyncio.sleep(MIN_RETRY_DELAY)
        else:
            return


async def poll_loop(service: Service) -> None:
    """Sync runs every `SYNC_POLL_INTERVAL` (jittered); an interrupted run is retried when WISEflow allows."""
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    interval = service.settings.poll_interval
    while True:
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
    """Flush the request journal once a second."""
    while True:
        await asyncio.sleep(JOURNAL_FLUSH_INTERVAL)
        await service.journal.flush()


def register_metrics(service: Service) -> None:
    """The Prometheus figures: API calls, breaker, webhooks, inbox and outbox backlogs.

    Read at scrape time from the objects that own them (callback gauges), so there is one source of truth;
    monotonic figures are named without `_total` because they are exposed as gauges.
    """
    m = service.metrics
    m.gauge_fn("wiseflow_api_requests", "Requests sent to WISEflow", lambda: float(service.client.calls))
    m.gauge_fn(
        "wiseflow_breaker_open",
        "1 while the circuit breaker is not closed",
        lambda: 0.0 if service.client.breaker.state.value == "closed" else 1.0,
    )
    m.gauge_fn("wiseflow_sync_runs", "Sync runs since start", lambda: float(service.runs))
    m.gauge_fn("wiseflow_webhook_deliveries", "Webhook deliveries", lambda: float(service.figures.received))
    m.gauge_fn("wiseflow_webhook_duplicates", "Duplicates absorbed", lambda: float(service.figures.duplicates))
    m.gauge_fn(
        "wiseflow_webhook_rejected",
        "Webhook deliveries rejected, by reason",
        lambda: {reason: float(n) for reason, n in service.figures.rejected.items()},
        labels=("reason",),
    )
    m.gauge_fn(
        "wiseflow_inbox_events", "Inbox events by status", lambda: _inbox_counts(service), labels=("status",)
    )
    m.gauge_fn(
        "wiseflow_outbox_rows", "Outbox rows by status", lambda: _outbox_counts(service), labels=("status",)
    )


async def _inbox_counts(service: Service) -> dict[str, float]:
    return {k: float(v) for k, v in (await service.inbox.counts()).items()}


async def _outbox_counts(service: Service) -> dict[str, float]:
    async with service.store.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status") as cursor:
        return {str(row[0]): float(row[1]) for row in await cursor.fetchall()}


async def status_of(service: Service) -> dict[str, Any]:
    """The `/status` document: what an operator asks first."""
    run = service.last_run
    return {
        "service": "wiseflow-sync",
        "version": __version__,
        "api_url": service.settings.api_url,
        "client_name": service.settings.client_name,
        "breaker": service.client.breaker.state.value,
        "api_calls": service.client.calls,
        "runs": service.runs,
        "last_run": None
        if run is None
        else {
            "outcome": run.outcome,
            "reason": run.reason,
            "api_calls": run.api_calls,
            "records": run.records,
            "changes": run.changes,
            "duration_s": round(run.duration, 3),
        },
        "webhooks": service.figures.snapshot(),
        "inbox": await service.inbox.counts(),
        "outbox": await _outbox_counts(service),
        "sink": service.settings.sink_url is not None,
    }


# Probes and scrapes are frequent and say nothing about the integration: no span for them.
UNTRACED_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics"})


def tracing_middleware(tracer: trace.Tracer) -> Middleware:
    """One server span per request (route template, method, status; never headers or bodies)."""

    @web.middleware
    async def trace_requests(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in UNTRACED_PATHS:
            return await handler(request)
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        with tracer.start_as_current_span(f"{request.method} {template}", kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("http.route", template)
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            return response

    return trace_requests


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
    app = web.Application(client_max_size=2 * 1024 * 1024, middlewares=[tracing_middleware(tracer)])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = await open_service(settings, clock, tracer_provider)
        app[SERVICE] = service
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
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    # The router is frozen before startup, but the receiver exists only once the store is open.
    app.router.add_post(WEBHOOK_PATH, webhook)
    return app


async def webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/wiseflow`, handed to the receiver."""
    return await request.app[SERVICE].receiver.handle(request)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def livez(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. It never depends on WISEflow."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: can accept webhooks (database writable, migrations applied, not shutting down)."""
    service = request.app.get(SERVICE)
    if service is None or service.shutting_down:
        return _json({"status": "unavailable", "reason": "starting or stopping"}, status=503)
    try:
        await service.store.ping()
    except Exception as exc:  # StoreError and anything SQLite raises: not ready, never a 500
        return _json({"status": "unavailable", "reason": type(exc).__name__}, status=503)
    return _json({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    text = await request.app[SERVICE].metrics.render_async()
    return web.Response(text=text, headers={"Content-Type": prom.CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    """The JSON status document."""
    return _json(await status_of(request.app[SERVICE]))
