"""The process's objects, wired once from the settings: `open_service` / `close_service`.

`run`, `sync --once` and `demo` all get their store, WISEflow client, poller, inbox, worker, catch-up,
journal and (with a sink) deliverer here, so there is one wiring to read and to test.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web
from opentelemetry import trace

from service import __version__
from service.adapters.metrics import ServiceMetrics
from service.adapters.sink import HttpSink
from service.adapters.store import Store, runs
from service.adapters.store.inbox import Inbox
from service.adapters.store.journal import JournalWriter
from service.adapters.store.outbox import Outbox
from service.adapters.store.unit import SqliteSyncStore
from service.adapters.webhook_http import WebhookReceiver, verifier_from_settings
from service.adapters.wiseflow.client import WiseflowClient, log_transition
from service.adapters.wiseflow.records import RequestRecord
from service.core import planner
from service.core.breaker import State as BreakerState
from service.core.breaker import Transition
from service.core.clock import Clock, SystemClock
from service.core.signatures import WebhookVerifier
from service.core.webhook_figures import WebhookFigures
from service.settings import Settings
from service.sync.catchup import CatchUp
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller, Progress, RunSummary

NOT_BEFORE_KEY: Final = "wiseflow:not_before"
log = logging.getLogger("service.runtime")


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
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    last_run: RunSummary | None = None
    runs: int = 0
    shutting_down: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Wall-clock time before which WISEflow asked not to be called (an opening of the breaker with its
    # Retry-After); persisted so that a restart inside a maintenance window does not call too early.
    not_before: float = 0.0
    not_before_saved: float = 0.0

    def note_transition(self, transition: Transition) -> None:
        """The breaker's hook: log it, and remember how long WISEflow asked us to stay away."""
        log_transition(transition)
        self.metrics.observe_transition(transition)
        if transition.target is BreakerState.OPEN and transition.retry_after > 0:
            self.not_before = max(self.not_before, self.clock.wall() + transition.retry_after)

    async def save_not_before(self) -> None:
        """Persist `not_before` when it moved (called by the journal loop and at shutdown).

        A 429's pause lives in the shared limiter rather than the breaker: it is folded in here.
        """
        paused = self.client.limiter.gate.pause_remaining()
        if paused > 0:
            self.not_before = max(self.not_before, self.clock.wall() + paused)
        if self.not_before > self.not_before_saved:
            async with self.store.transaction() as db:
                await runs.set_checkpoint(db, NOT_BEFORE_KEY, self.not_before, self.clock.wall())
            self.not_before_saved = self.not_before

    async def restore_not_before(self) -> float:
        """At startup: pause every caller for what is left of a Retry-After a previous process was given."""
        async with self.store.transaction() as db:
            saved = await runs.get_checkpoint(db, NOT_BEFORE_KEY)
        remaining = float(saved) - self.clock.wall() if isinstance(saved, int | float) else 0.0
        if remaining > 0:
            self.not_before = self.not_before_saved = float(saved)
            self.client.limiter.pause(remaining)
            log.warning(
                "WISEflow asked a previous process to wait: pausing",
                extra={"event": "wiseflow.pause_restored", "retry_after": round(remaining, 3)},
            )
        return max(0.0, remaining)

    async def run_sync(self, *, full: bool = False) -> RunSummary:
        """One sync run (`full`: every live flow, due or not), then wake the deliverer for what it queued."""
        summary = await self.poller.run_once(full=full)
        self.last_run = summary
        self.runs += 1
        self.metrics.observe_run(summary)
        if self.deliverer is not None and summary.changes:
            self.deliverer.wake()
        return summary


SERVICE: Final = web.AppKey("service", Service)


class _TransitionHook:
    """Forwards breaker transitions to the service, which exists only after the client is built."""

    def __init__(self) -> None:
        self.target: Service | None = None

    def __call__(self, transition: Transition) -> None:
        if self.target is None:
            log_transition(transition)
        else:
            self.target.note_transition(transition)


class WakingRefresher:
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
    # Everything a setting can break is checked before anything is opened: a bad value is one line, not a
    # half-open process holding a database.
    settings.require_api_credentials()
    verifier = verifier_from_settings(settings)
    clock = clock or SystemClock()
    store = await Store.open(settings.database)
    try:
        service = _wire(settings, clock, store, verifier, tracer_provider, on_progress)
        await service.restore_not_before()
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
) -> Service:
    """Build every component around an open store (no I/O: the HTTP session connects lazily)."""
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    session = aiohttp.ClientSession()
    journal = JournalWriter(store)
    metrics = ServiceMetrics()

    def on_request(record: RequestRecord) -> None:
        journal.record(record)
        metrics.observe_request(record)

    tracer = trace.get_tracer("service.adapters.wiseflow", __version__, tracer_provider=tracer_provider)
    hooks = _TransitionHook()
    client = WiseflowClient(
        settings, session, clock, rng, on_request=on_request, tracer=tracer, on_transition=hooks
    )
    deliverer = None
    if settings.sink_url is not None:
        sink = HttpSink(
            settings.sink_url,
            session,
            client_name=settings.client_name,
            token=settings.sink_token,
            secret=settings.sink_secret,
            wall=clock.wall,
        )
        deliverer = OutboxDeliverer(Outbox(store), sink, clock, rng)
    poller = Poller(
        client,
        SqliteSyncStore(store),
        clock,
        rng,
        planner.PlanPolicy.from_settings(settings),
        concurrency=settings.concurrency,
        on_progress=on_progress,
    )
    figures = WebhookFigures()
    inbox = Inbox(store)
    refresher = WakingRefresher(poller, deliverer)
    worker = InboxWorker(
        inbox,
        refresher,
        clock,
        WorkerPolicy(max_attempts=settings.webhook_max_attempts, concurrency=settings.concurrency),
        figures,
        rng,
    )
    receiver = WebhookReceiver(
        verifier, inbox, clock, figures, on_stored=worker.wake, max_body=settings.webhook_max_body
    )
    catchup = CatchUp(inbox, refresher, clock)
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
        metrics=metrics,
    )
    hooks.target = service
    return service


async def close_service(service: Service) -> None:
    """Stop the loops, write what is buffered, close connections."""
    service.shutting_down = True
    for task in service.tasks:
        task.cancel()
    await asyncio.gather(*service.tasks, return_exceptions=True)
    service.tasks.clear()
    await service.save_not_before()
    await service.journal.close()
    await service.client.close()
    await service.session.close()
    await service.store.close()
