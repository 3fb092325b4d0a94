"""The composition root: settings in, objects wired, aiohttp application out.

    open_service(settings) -> Service      the store and its unit of work, the signals between the loops,
                                           the WISEflow client, the sync engine, the inbox and its worker,
                                           catch-up, the journal and (with a sink) the deliverer, each
                                           given the narrow parts it uses
    build_app(settings) -> Application     cleanup_ctx: open the service, start the loops; on shutdown
                                           cancel them within a bound (sync/jobs), flush the journal,
                                           close everything
      routes:  POST /webhooks/wiseflow, GET /livez, /readyz, /metrics, /status (adapters/ops_http)
      loops:   sync runs, pause look, inbox worker, outbox deliverer, catch-up, journal flush (sync/loops),
               retention; each a job of `Service.tasks`, the process's one task owner

`run`, `sync --once` and `demo` all get their objects from `open_service`; their WISEflow client, like every
other command's, from `service.clients`. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import aiohttp
from aiohttp import web
from aiojobs import Scheduler
from opentelemetry import trace

from service import __version__
from service.adapters.metrics import ServiceMetrics
from service.adapters.ops_http import OPS, Ops, add_ops_routes, register_metrics, tracing_middleware
from service.adapters.readiness import Readiness
from service.adapters.sink import HttpSink
from service.adapters.spans import SCOPE
from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.store.journal import JournalWriter
from service.adapters.store.pause import SqlitePauseStore
from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.telemetry import receipt_sampling
from service.adapters.webhook_http import WebhookReceiver, add_webhook_routes, verifier_from_settings
from service.adapters.wiseflow.client import WiseflowClient
from service.adapters.wiseflow.pauses import CHECK_INTERVAL
from service.clients import wiseflow_client
from service.core import planner
from service.core.clock import Clock, SystemClock
from service.core.signatures import WebhookVerifier
from service.core.status import ClientFigures, StatusBoard
from service.core.webhook_figures import WebhookFigures
from service.settings import Settings
from service.sync.catchup import CatchUp
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.jobs import close_jobs, open_jobs
from service.sync.loops import catchup_loop, every, guarded, poll_loop
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller, Progress
from service.sync.retention import retention_loop
from service.sync.signals import Signals
from service.sync.until_done import SyncRunner

log = logging.getLogger("service.app")

# Seconds between journal flushes: one commit per second at most for diagnosis data.
JOURNAL_FLUSH_INTERVAL: Final = 1.0
# Seconds between looks at the saved pause while one is held (reads only then; see wiseflow/pauses.py).
PAUSE_CHECK_INTERVAL: Final = CHECK_INTERVAL


@dataclass(slots=True)
class Service:
    """The long-lived objects of one process, wired once by `open_service` (no behaviour of its own)."""

    settings: Settings
    clock: Clock
    store: Store
    uow: SqliteUnitOfWork
    signals: Signals
    session: aiohttp.ClientSession
    client: WiseflowClient
    poller: Poller
    runner: SyncRunner
    status: StatusBoard
    inbox: Inbox
    receiver: WebhookReceiver
    worker: InboxWorker
    catchup: CatchUp
    journal: JournalWriter
    figures: WebhookFigures
    deliverer: OutboxDeliverer | None
    metrics: ServiceMetrics
    # The one owner of every task that lives as long as the process (`start_loops`, `sync --once`'s look at
    # the saved pause); `close_service` closes it.
    tasks: Scheduler = field(default_factory=open_jobs)


SERVICE: Final = web.AppKey("service", Service)


async def open_service(
    settings: Settings,
    clock: Clock | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    command: str = "run",
) -> Service:
    """Open the store and the clients and wire every component (no loop is started); the sync runs are
    recorded as started by `command` (run, sync, demo)."""
    # Everything a setting can break is checked before anything is opened: a bad value is one line, not a
    # half-open process holding a database.
    settings.require_api_credentials()
    verifier = verifier_from_settings(settings)
    clock = clock or SystemClock()
    store = await Store.open(settings.database)
    try:
        service = _wire(settings, clock, store, verifier, tracer_provider, on_progress, command)
        await service.client.pauses.restore()  # what is left of a pause a previous process was given
    except BaseException:
        await store.close()
        raise
    return service


def _wire(
    settings: Settings,
    clock: Clock,
    store: Store,
    verifier: WebhookVerifier,
    tracer_provider: trace.TracerProvider | None,
    on_progress: Callable[[Progress], None] | None,
    command: str,
) -> Service:
    """Build every component around an open store (no I/O: the HTTP session connects lazily)."""
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    # Every span of the service comes from this one provider: the one given, else the global one.
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE, __version__)
    session = aiohttp.ClientSession()
    journal = JournalWriter(store)
    metrics = ServiceMetrics()
    uow = SqliteUnitOfWork(store)
    signals = Signals()  # stored -> inbox worker; queued -> deliverer; pause lifted -> inbox worker
    client = wiseflow_client(
        settings,
        clock,
        pause_store=SqlitePauseStore(store, clock),  # restored by open_service
        journal=journal,
        metrics=metrics,
        session=session,
        rng=rng,
        tracer_provider=tracer_provider,
        on_pause_lifted=signals.pause_lifted,  # events deferred behind a cleared pause go at once
    )
    status = StatusBoard(lambda: _client_figures(client))
    deliverer = None
    if settings.sink_url is not None:
        sink = HttpSink(
            settings.sink_url,
            session,
            client_name=settings.client_name,
            token=settings.sink_token,
            secret=settings.sink_secret,
            wall=clock.wall,
            tracer=tracer,
        )
        deliverer = OutboxDeliverer(
            uow, sink, clock, rng, wake=signals.outbox, on_pause=status.record_sink_pause
        )
    poller = Poller(
        client,
        uow,
        clock,
        rng,
        planner.PlanPolicy.from_settings(settings),
        concurrency=settings.concurrency,
        on_progress=on_progress,
        command=command,
        tracer=tracer,
    )
    figures = WebhookFigures()
    inbox = Inbox(store)
    policy = WorkerPolicy(max_attempts=settings.webhook_max_attempts, concurrency=settings.concurrency)
    # The worker and catch-up call the flow refresh itself, the one the poller's runs use (its per-flow locks).
    worker = InboxWorker(uow, poller.refresh, signals, clock, policy, figures, rng, tracer)

    return Service(
        settings=settings,
        clock=clock,
        store=store,
        uow=uow,
        signals=signals,
        session=session,
        client=client,
        poller=poller,
        runner=SyncRunner(poller, (status.record_run, metrics.observe_run), signals),
        status=status,
        inbox=inbox,
        receiver=WebhookReceiver(
            verifier, inbox, clock, figures, on_stored=signals.stored, max_body=settings.webhook_max_body
        ),
        worker=worker,
        catchup=CatchUp(uow, poller.refresh, signals, clock),
        journal=journal,
        figures=figures,
        deliverer=deliverer,
        metrics=metrics,
    )


def _client_figures(client: WiseflowClient) -> ClientFigures:
    """The client's running figures for the status board (the only place that reads them)."""
    return ClientFigures(
        client.breaker.state.value,
        client.calls,
        client.token_requests,
        client.auth_recoveries,
        client.paused_seconds,
    )


async def close_service(service: Service) -> None:
    """Stop the loops, write what is buffered, close connections."""
    service.status.shutting_down = True
    await close_jobs(service.tasks)  # bounded; logs what it cancelled and any that did not stop or failed
    await service.journal.close()
    await service.client.close()
    await service.session.close()
    await service.store.close()


async def start_loops(service: Service) -> None:
    """Start the loops: polling, pause, inbox worker, outbox deliverer, catch-up, journal, retention."""
    interval = service.settings.poll_interval
    pauses = service.client.pauses
    loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("poll", lambda: poll_loop(service.runner, service.client.breaker.retry_after, interval, pauses.sleep)),
        # While a pause is held no request leaves to read the saved one: an operator's clear is seen here.
        ("pause", lambda: every(PAUSE_CHECK_INTERVAL, pauses.look)),
        ("inbox", service.worker.run),
        ("catchup", lambda: catchup_loop(service.catchup)),
        ("journal", lambda: every(JOURNAL_FLUSH_INTERVAL, service.journal.flush)),
        ("retention", lambda: retention_loop(service.uow, service.settings.retain_days, service.clock)),
    ]
    if service.deliverer is not None:
        loops.append(("outbox", service.deliverer.run))
    for name, loop in loops:
        await service.tasks.spawn(guarded(name, loop), name=f"wiseflow-sync:{name}")


def _holder() -> str:
    """Who holds the `run` lock, for a second `run` to name: process, host and start time."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()}, running since {started}"


def build_app(
    settings: Settings,
    clock: Clock | None = None,
    *,
    start: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
    command: str = "run",
) -> web.Application:
    """The service's aiohttp application; `start=False` wires everything but runs no background loop.
    `command` is what its sync runs are recorded as started by (`run`, or `demo`).

    Spans go to `tracer_provider`, or to the global provider that `setup_tracing` installs.
    """
    tracer = trace.get_tracer("service.app", __version__, tracer_provider=tracer_provider)
    # No route of ours takes a body larger than a webhook's (the receiver enforces its own bound too).
    receipts = receipt_sampling(tracer_provider or trace.get_tracer_provider())
    middlewares = [tracing_middleware(tracer, receipts)]
    app = web.Application(client_max_size=settings.webhook_max_body, middlewares=middlewares)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        with Store.hold(settings.database, "run", _holder()):  # one `run` per database, for its lifetime
            service = await open_service(settings, clock, tracer_provider, command=command)
            app[SERVICE] = service
            readiness = Readiness(
                database=settings.database,
                has_webhook_secret=bool(settings.webhook_secrets),
                min_free_bytes=settings.min_free_bytes,
                ping=service.store.ping,
            )
            app[OPS] = ops = Ops(
                settings, service.status, service.uow, service.figures, service.catchup,
                service.metrics, readiness, service.store, service.clock,
            )  # fmt: skip
            register_metrics(ops)
            # aiohttp freezes the router only after startup (AppRunner._make_server), so the route can point
            # straight at the receiver, which exists once the store is open.
            add_webhook_routes(app, service.receiver)
            if start:
                await start_loops(service)
            log.info(
                "wiseflow-sync started",
                extra={"event": "service.started", "version": __version__, "api_url": settings.api_url},
            )
            yield
            await readiness.close()
            await close_service(service)
            log.info("wiseflow-sync stopped", extra={"event": "service.stopped"})

    async def on_shutdown(app: web.Application) -> None:
        # Readiness goes false first, so the load balancer stops sending while we drain.
        if SERVICE in app:
            app[SERVICE].status.shutting_down = True

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    add_ops_routes(app)
    return app
