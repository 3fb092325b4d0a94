"""The certification document from the live configuration and what the database recorded.

Every policy figure is read from the settings and policy objects the service runs with, and every
measured figure from its own tables (runs counted on the wire, the request journal, inbox and outbox),
so the document cannot drift from the code. Without a database every measured figure is `None`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence

from service import __version__
from service.adapters.store.figures import StoredFigures
from service.adapters.wiseflow.endpoints import ENDPOINTS, endpoint_of
from service.adapters.wiseflow.transport import USER_AGENT
from service.core.backoff import RetryPolicy
from service.core.breaker import BreakerPolicy
from service.core.planner import PlanPolicy
from service.settings import Settings

from .model import (
    Auth,
    Certification,
    EndpointUse,
    Errors,
    Logging,
    Overview,
    RateLimits,
    RequestsPerRun,
    Sync,
    Webhooks,
)

# The runs the per-run figures (median, p95, max) are taken over: the most recent successful ones.
RECENT_RUNS = 100
# WISEflow's published limits per client (the budget's defaults stay below them).
WISEFLOW_PER_SECOND = 200
WISEFLOW_PER_MINUTE = 5000
EVENTS_FROM_WISEFLOW = "wiseflow"
EVENTS_FROM_SETTING = "SYNC_WEBHOOK_EVENTS"


def build(
    settings: Settings,
    figures: StoredFigures | None,
    events: Sequence[str] | None = None,
    events_source: str = EVENTS_FROM_SETTING,
) -> Certification:
    """The document; `events` as WISEflow's subscription lists them, else the configured ones."""
    journal = _by_endpoint(figures)
    return Certification(
        overview=Overview(
            service="wiseflow-sync",
            version=__version__,
            purpose="mirrors WISEflow flows, participants and grades into SQLite and delivers every new or "
            "changed final grade to the institution's SIS exactly once",
            stack="Python 3.11+, asyncio (aiohttp, aiosqlite), OpenTelemetry, Prometheus; on Kubernetes",
            api_url=settings.api_url,
        ),
        auth=_auth(settings, figures, journal),
        endpoints=[
            EndpointUse(e.method, e.path, e.purpose, list(e.used_by), _get(journal, f"{e.method} {e.route}"))
            for e in ENDPOINTS
        ],
        sync=_sync(settings, figures),
        webhooks=_webhooks(settings, figures, events, events_source),
        rate_limits=_rate_limits(settings, figures),
        logging=Logging(
            format="JSON lines on stderr (one object a line)",
            request_fields=["x_trace_id", "method", "route", "path", "status", "duration_ms", "attempt"],
            never_logged=["tokens", "client secret", "webhook secrets", "query strings", "personal data"],
            traces="OpenTelemetry over OTLP/HTTP; a sync run is one trace; API spans carry wiseflow.trace_id",
            traces_exported=settings.otel_endpoint is not None,
            metrics="Prometheus text on GET /metrics; JSON on GET /status",
            self_diagnosis="wiseflow-sync diagnose X_TRACE_ID (from the request journal)",
            journalled_requests=None if figures is None else sum(figures.by_status.values()),
        ),
        errors=_errors(figures),
    )


def _auth(settings: Settings, f: StoredFigures | None, journal: Counter[str] | None) -> Auth:
    if settings.uses_oauth:
        method, endpoint = "oauth2_client_credentials", "POST /oauth2/token"
        auth_header = "Authorization: Bearer"
    elif settings.api_key is not None:
        method, endpoint, auth_header = "api_key", None, "x-api-key"
    else:
        method, endpoint, auth_header = "not_configured", None, "none configured"
    return Auth(
        method=method,
        token_endpoint=endpoint,
        renewal="held in memory only; attached after the rate-limit wait and renewed 10% of its lifetime "
        "before expiry (at least the connect timeout, at most 60 s early), so it cannot expire in flight; one "
        "token request shared by concurrent callers; after a 401 one new token and one replay; refused "
        "credentials logged once and retried on a slow, doubling schedule",
        client_name=settings.client_name,
        user_agent=USER_AGENT,
        headers=["X-Client-Name", "User-Agent", "Accept: application/json", auth_header],
        token_requests=_get(journal, "POST /oauth2/token"),
        unauthorized_answers=None if f is None else f.by_status.get(401, 0),
    )


def _sync(settings: Settings, f: StoredFigures | None) -> Sync:
    plan = PlanPolicy.from_settings(settings)
    return Sync(
        poll_interval_s=settings.poll_interval,
        jitter=plan.jitter,
        dormant_interval_s=plan.dormant_interval,
        reconcile_interval_s=plan.reconcile_interval or None,
        modified_since_filter=False,
        strategy="runs planned from flow states and dates, participation events and webhooks; active flows "
        "every poll interval, flows not yet started at the dormant interval, a concluded flow's grades once "
        "more after it concludes, archived flows never again; runs never overlap and resume from a checkpoint",
        runs=None if f is None else f.runs,
        runs_ok=None if f is None else len(f.ok_run_calls),
        requests_per_run=requests_per_run([] if f is None else f.ok_run_calls),
        requests_by_endpoint=None if f is None else dict(sorted(f.requests_by_route.items())),
    )


def requests_per_run(calls: Sequence[int]) -> RequestsPerRun:
    """First successful run (the full first sync), latest, and median, p95, max of the recent ones."""
    if not calls:
        return RequestsPerRun(None, None, None, None, None)
    recent = sorted(calls[-RECENT_RUNS:])
    p95 = recent[max(0, math.ceil(0.95 * len(recent)) - 1)]  # nearest rank
    return RequestsPerRun(calls[0], calls[-1], float(statistics.median(recent)), float(p95), recent[-1])


def _webhooks(
    settings: Settings, f: StoredFigures | None, events: Sequence[str] | None, source: str
) -> Webhooks:
    if settings.webhook_scheme == "wiseflow":
        signature = f"HMAC-SHA256 of the raw body, base64, in {settings.webhook_signature_header}"
    else:
        signature = "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature"
    return Webhooks(
        events=list(settings.webhook_events if events is None else events),
        events_source=EVENTS_FROM_SETTING if events is None else source,
        scheme=settings.webhook_scheme,
        signature=signature + ", compared in constant time",
        tolerance_s=settings.webhook_tolerance,
        secrets_configured=len(settings.webhook_secrets),
        idempotency="committed to the inbox before the 200; a redelivery (the same sequence, event, flow and "
        "participant within WISEflow's redelivery window) is answered 200 and not processed again; a different "
        "event under a reused sequence is stored, processed and reported",
        fallback="polling stays the safety net; after downtime or silence longer than WISEflow's redelivery "
        "horizon (8 x 15 min) the flows active in that gap are re-fetched at once",
        deliveries=None if f is None else f.deliveries,
        distinct_events=None if f is None else f.events,
        duplicates=None if f is None else max(0, f.deliveries - f.events),
        dead_letters=None if f is None else f.dead_letters,
    )


def _rate_limits(settings: Settings, f: StoredFigures | None) -> RateLimits:
    retry = RetryPolicy.from_settings(settings)
    return RateLimits(
        per_second=settings.rate_per_second,
        per_minute=settings.rate_per_minute,
        wiseflow_per_second=WISEFLOW_PER_SECOND,
        wiseflow_per_minute=WISEFLOW_PER_MINUTE,
        strategy="one limiter shared by every loop, never over budget in any sliding window; RateLimit-* "
        "headers slow it before a 429; a 429 pauses every caller until its Retry-After (saved before the next "
        "request, honoured up to pause_max_s); safe requests only "
        "are retried, with capped exponential backoff and full jitter",
        retry_attempts=retry.attempts,
        backoff_base_s=retry.backoff.base,
        backoff_cap_s=retry.backoff.cap,
        deadline_s=retry.deadline,
        retry_after_max_s=retry.retry_after_max,
        pause_max_s=settings.pause_max,
        requests=None if f is None else sum(f.by_status.values()),
        answers_429=None if f is None else f.by_status.get(429, 0),
        shortest_wait_after_429_s=None if f is None or f.wait_after_429 is None else round(f.wait_after_429, 3),
        retry_after_answers=None if f is None else f.retry_after_answers,
        retry_after_honoured=None if f is None or not f.retry_after_answers else f.retry_after_honoured,
    )


def _errors(f: StoredFigures | None) -> Errors:
    breaker = BreakerPolicy()
    return Errors(
        breaker="per API base URL: opens on consecutive 5xx, timeouts or refused connections, or at once on "
        "a 503 with Retry-After; stays open for the Retry-After (up to SYNC_PAUSE_MAX, as a 429's) or a "
        "growing backoff (at most breaker_open_cap_s, starting afresh after a maintenance window); while open "
        "nothing is sent, loops skip their runs, webhooks are still accepted; one probe closes it",
        breaker_failure_threshold=breaker.failure_threshold,
        breaker_open_cap_s=breaker.open_cap,
        retried="GET and the read-only POST searches; 408, 429 and 5xx; writes never automatically",
        answers_5xx=None if f is None else sum(n for s, n in f.by_status.items() if s >= 500),
        answers_503=None if f is None else f.by_status.get(503, 0),
        no_answer=None if f is None else f.by_status.get(0, 0),
        grades_delivered=None if f is None else f.grades_delivered,
        grades_pending=None if f is None else f.grades_pending,
    )


def _by_endpoint(f: StoredFigures | None) -> Counter[str] | None:
    """Journalled requests by `METHOD /route`."""
    if f is None:
        return None
    counts: Counter[str] = Counter()
    for (method, path, _status), n in f.journal.items():
        counts[endpoint_of(method, path)] += n
    return counts


def _get(counts: Counter[str] | None, key: str) -> int | None:
    return None if counts is None else counts[key]
