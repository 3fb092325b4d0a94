"""The service's operational HTTP surface: health, readiness, metrics, status, and request spans.

GET /livez    liveness: the event loop answers; never depends on WISEflow
GET /readyz   readiness: can accept webhooks (a webhook secret, free space, database writable and migrated)
GET /metrics  Prometheus text, read at scrape time from the objects that own the figures
GET /status   JSON: breaker, the last sync run as recorded (as `runs --format json` shows it), webhook
              figures, inbox and outbox backlogs
GET /, GET /certify   the operator console and the certification answers as HTML (adapters/console)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import AbstractResource
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from service import __version__
from service.adapters.metrics import CONTENT_TYPE, Backlogs, ServiceMetrics, Snapshot
from service.adapters.readiness import Readiness, Verdict
from service.adapters.store import Store, console
from service.adapters.telemetry import STATUS_ATTRIBUTE, WEBHOOK_ROUTE, ReceiptSampling
from service.core.clock import Clock
from service.core.status import StatusBoard
from service.core.store_ports import UnitOfWork
from service.core.webhook_figures import WebhookFigures
from service.settings import Settings


class CatchUpFigures(Protocol):
    """What the metrics read of catch-up."""

    catchups: int


@dataclass(frozen=True, slots=True)
class Ops:
    """What the operational endpoints read: the status board, the store's counts, the figures."""

    settings: Settings
    status: StatusBoard
    uow: UnitOfWork
    figures: WebhookFigures
    catchup: CatchUpFigures
    metrics: ServiceMetrics
    readiness: Readiness
    store: Store  # the console's own reads: latest runs and requests, the saved pause, certify's figures
    clock: Clock  # the console's "how long ago" and "how long left"


OPS: Final = web.AppKey("ops", Ops)


def register_metrics(service: Ops) -> None:
    """The scrape-time figures: read from the objects that own them, so there is one source of truth."""

    def snapshot() -> Snapshot:
        now = service.status.snapshot()
        return Snapshot(
            breaker_open=now.client.breaker != "closed",
            runs=now.runs,
            catchups=service.catchup.catchups,
            token_requests=now.client.token_requests,
            auth_recoveries=now.client.auth_recoveries,
            paused_seconds=now.client.paused_seconds,
            sink_paused=now.sink_paused,
        )

    async def backlogs() -> Backlogs:
        return Backlogs(
            last_success=await _last_success(service),
            inbox=await inbox_counts(service),
            outbox=await outbox_counts(service),
            withdrawn=await _withdrawals(service),
            oldest_pending=await console.oldest_pending_grade_at(service.store) or 0.0,
        )

    service.metrics.read_at_scrape(snapshot, backlogs, service.figures)


async def _withdrawals(service: Ops) -> int:
    async with service.uow.read() as unit:
        return await unit.outbox.withdrawals()


async def _last_success(service: Ops) -> float:
    async with service.uow.read() as unit:
        ended = await unit.runs.last_success_at()
    return 0.0 if ended is None else ended


async def inbox_counts(service: Ops) -> dict[str, int]:
    """Inbox events by status (pending, done, dead, unknown); deliveries are counted apart."""
    async with service.uow.read() as unit:
        counts = await unit.inbox.counts()
    return {k: v for k, v in counts.items() if k != "deliveries"}


async def outbox_counts(service: Ops) -> dict[str, int]:
    """Outbox rows by status (pending, delivered)."""
    async with service.uow.read() as unit:
        return await unit.outbox.counts()


async def last_run(service: Ops) -> dict[str, Any] | None:
    """The newest sync run recorded (running, or by another process too), as `runs --format json` shows it."""
    async with service.uow.read() as unit:
        latest = await unit.runs.latest(1)
    return latest[0].as_json() if latest else None


async def status_of(service: Ops) -> dict[str, Any]:
    """The `/status` document: what an operator asks first."""
    now = service.status.snapshot()
    return {
        "service": "wiseflow-sync",
        "version": __version__,
        "api_url": service.settings.api_url,
        "client_name": service.settings.client_name,
        "breaker": now.client.breaker,
        "api_calls": now.client.requests,
        "runs": now.runs,
        "last_run": await last_run(service),
        "webhooks": service.figures.snapshot(),
        "inbox": await inbox_counts(service),
        "outbox": await outbox_counts(service),
        "sink": service.settings.sink_url is not None,
        "sink_paused": now.sink_paused,
    }


# Probes, scrapes and the console's refreshes are frequent and say nothing about the integration: no span.
UNTRACED_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics", "/", "/certify"})


# Span names and attributes by (method, route): computed once, not per request. Bounded, because the
# method is whatever a client sends.
_ROUTE_CACHE_SIZE: Final = 64


# Not opentelemetry-instrumentation-aiohttp-server: 0.66b1 pins semantic-conventions 0.66b1 (SDK 1.45.2 pins
# 0.66b2), and per request it rebuilds URL and header attributes and updates two metrics, on the hot path.
def tracing_middleware(tracer: trace.Tracer, receipts: ReceiptSampling | None = None) -> Middleware:
    """One server span per request (route template, method, status; never headers or bodies).

    On the webhook path under load, this is one of the largest costs per request, so it does what
    `start_as_current_span` does without its two generator context managers, with the route's name and
    attributes built once and passed at start (no per-attribute lock), and the same exception handling.
    With `receipts` (the default sampler's), a webhook receipt's sampling is decided before its span is
    started, and a receipt that is not sampled gets none (`telemetry.ReceiptSampling`). A span the sampler
    did not take is not made current (nothing inside a receipt starts a span), and when such a request
    fails (an answer of 400 or more, or an exception) its span is started again after the outcome, status
    included, so that a sampler may keep every failure (`WebhookRatioSampler`).
    """
    routes: dict[tuple[str, object], _Route] = {}

    @web.middleware
    async def trace_requests(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in UNTRACED_PATHS:
            return await handler(request)
        method, resource = request.method, request.match_info.route.resource
        route = routes.get((method, resource))
        if route is None:
            route = _route(method, resource)
            if len(routes) < _ROUTE_CACHE_SIZE:
                routes[(method, resource)] = route
        started = time.time_ns()
        if route.receipt and receipts is not None:
            span = receipts.start_span(tracer, route.name, route.attributes, started)
            if span is None:
                return await _untraced(tracer, route, started, handler, request)
        else:
            span = tracer.start_span(
                route.name, kind=trace.SpanKind.SERVER, attributes=route.attributes, start_time=started
            )
            if not span.is_recording():
                return await _untraced(tracer, route, started, handler, request)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            response = await handler(request)
        except Exception as exc:  # as `use_span` does: recorded on the span, then raised on
            _record_failure(span, exc)
            raise
        else:
            span.set_attribute(STATUS_ATTRIBUTE, response.status)
            return response
        finally:
            otel_context.detach(token)
            span.end()

    return trace_requests


async def _untraced(
    tracer: trace.Tracer,
    route: _Route,
    started: int,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    request: web.Request,
) -> web.StreamResponse:
    """Run a request whose span was not sampled; a failure gets its span after the outcome."""
    try:
        response = await handler(request)
    except Exception as exc:
        status = exc.status if isinstance(exc, web.HTTPException) else 500
        _record_failure(_late_span(tracer, route, started, status), exc, end=True)
        raise
    if response.status >= 400:
        _late_span(tracer, route, started, response.status).end()
    return response


def _late_span(tracer: trace.Tracer, route: _Route, started: int, status: int) -> trace.Span:
    """The request's span, started after its outcome (from `started`, with its status among the attributes)."""
    attributes: dict[str, str | int] = {**route.attributes, STATUS_ATTRIBUTE: status}
    return tracer.start_span(route.name, kind=trace.SpanKind.SERVER, attributes=attributes, start_time=started)


def _record_failure(span: trace.Span, exc: Exception, *, end: bool = False) -> None:
    """As `use_span` does: the exception recorded on the span and its status set to ERROR."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    if end:
        span.end()


@dataclass(frozen=True, slots=True)
class _Route:
    """A route's span name and attributes, and whether its requests are webhook receipts."""

    name: str
    attributes: dict[str, str]
    receipt: bool


def _route(method: str, resource: object) -> _Route:
    template = resource.canonical if isinstance(resource, AbstractResource) else "unmatched"
    attributes = {"http.request.method": method, "http.route": template}
    return _Route(f"{method} {template}", attributes, template == WEBHOOK_ROUTE)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def livez(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. It never depends on WISEflow."""
    return _json({"status": "ok"})


async def readiness_of(service: Ops | None) -> Verdict:
    """Can the service accept webhooks now (`/readyz`, the console); not while starting or stopping."""
    if service is None or service.status.shutting_down:
        return Verdict(False, "starting or stopping")
    return await service.readiness.check()


async def readyz(request: web.Request) -> web.Response:
    """Readiness: can accept webhooks (a webhook secret, free space, database writable and migrated)."""
    verdict = await readiness_of(request.app.get(OPS))
    if not verdict.ready:
        return _json({"status": "unavailable", "reason": verdict.reason}, status=503)
    return _json({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = await request.app[OPS].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    """The JSON status document."""
    return _json(await status_of(request.app[OPS]))


def add_ops_routes(app: web.Application) -> None:
    """Register the health, metrics and status routes, and the console's pages."""
    # Here, not at the top: the console reads `Ops` from this module.
    from service.adapters.console import add_console_routes

    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    add_console_routes(app)
