"""The certification review's written answers, from the live configuration and the database's figures.

UNIwise asks eight questions (docs/wiseflow.md) and wants the answers 24 h before a
screen-shared demo. Every answer here is derived from the settings and policies the service actually runs
with, and every figure is measured from its own database, so the document cannot drift from the code.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from service import __version__
from service.adapters.store import Store
from service.adapters.store.figures import read_figures
from service.core.backoff import RetryPolicy
from service.core.breaker import BreakerPolicy
from service.core.planner import PlanPolicy
from service.core.ports import WEBHOOK_EVENTS
from service.settings import Settings

ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST /oauth2/token", "OAuth 2.0 client credentials; a new token before expiry and after a 401"),
    ("POST /flows/search", "discovery of flows by state (paged, limit 100)"),
    ("GET /flow/{flowId}", "a flow's state and dates (state changes, vanished flows)"),
    ("GET /flows/{flowId}/participants", "participants of due flows (paged, limit 100)"),
    ("GET /flow/{flowId}/assessments", "grades of due flows"),
    ("POST /participation-events", "hand-ins since a cursor, for early refreshes (limit 1000)"),
    ("GET|POST /webhooks, GET|PUT|DELETE /webhooks/{webhookId}", "subscription management"),
    ("GET /license/info", "credentials self-check"),
)


@dataclass(slots=True)
class Figures:
    """What the database says the service has done."""

    runs: int = 0
    runs_ok: int = 0
    last_full_calls: int | None = None
    latest_calls: int | None = None
    median_calls: float | None = None
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    events: int = 0
    deliveries: int = 0
    dead_letters: int = 0
    grades_delivered: int = 0
    grades_pending: int = 0

    @property
    def duplicates(self) -> int:
        """Webhook deliveries absorbed as duplicates (every delivery id is recorded, events once)."""
        return max(0, self.deliveries - self.events)


async def gather_figures(store: Store) -> Figures:
    """Read the figures from an open store."""
    stored = await read_figures(store)
    f = Figures(
        runs=stored.runs,
        runs_ok=len(stored.ok_run_calls),
        by_status=stored.by_status,
        requests=sum(stored.by_status.values()),
        events=stored.events,
        deliveries=stored.deliveries,
        dead_letters=stored.dead_letters,
        grades_delivered=stored.grades_delivered,
        grades_pending=stored.grades_pending,
    )
    calls = stored.ok_run_calls
    if calls:
        f.last_full_calls, f.latest_calls = calls[0], calls[-1]
        f.median_calls = float(statistics.median(calls))
    return f


def answers(settings: Settings, figures: Figures | None) -> list[dict[str, Any]]:
    """The eight sections, each a title and its answer lines."""
    retry = RetryPolicy.from_settings(settings)
    breaker = BreakerPolicy()
    plan = PlanPolicy.from_settings(settings)
    f = figures or Figures()
    measured = figures is not None
    if settings.uses_oauth:
        auth = "OAuth 2.0 client credentials (client_secret_post) against POST /oauth2/token"
    elif settings.api_key is not None:
        auth = "static x-api-key (WISEFLOW_API_KEY); OAuth 2.0 is recommended and supported"
    else:
        auth = "NOT CONFIGURED: set WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET (OAuth 2.0, recommended)"
    return [
        _section(
            "1. Overview",
            f"wiseflow-sync {__version__}: mirrors WISEflow flows, participants and grades into SQLite and "
            "delivers every new or changed final grade to the institution's SIS exactly once.",
            "Language: Python 3.11+, asyncio (aiohttp, aiosqlite), OpenTelemetry; deployed on Kubernetes.",
        ),
        _section(
            "2. Authentication and headers",
            f"Method: {auth}.",
            "Token expiry: held in memory only, attached after the rate-limit wait and renewed 10% of its "
            "lifetime before expiry (at least the connect timeout, at most 60 s early), so it cannot expire "
            "in flight; concurrent callers share one token request; a 401 triggers one re-authentication and "
            "one replay of the call. Refused credentials are logged once and retried on a slow schedule.",
            f"X-Client-Name: {settings.client_name!r} on every request, the token request included; "
            f"User-Agent: wiseflow-sync/{__version__}; Accept: application/json.",
        ),
        _section("3. Endpoints used", *(f"{path}: {why}" for path, why in ENDPOINTS)),
        _section(
            "4. Synchronisation and polling",
            f"Active flows (participation or marking) every {settings.poll_interval:g} s with "
            f"{plan.jitter:.0%} jitter; flows not yet started every {plan.dormant_interval:g} s; a concluded "
            "flow's grades once more after it concludes, then "
            + (f"a reconciliation every {plan.reconcile_interval:g} s" if plan.reconcile_interval else "never")
            + "; archived flows never again.",
            "There is no modified-since filter: runs are planned from flow states and dates, participation "
            "events and webhooks. Runs never overlap and resume from their checkpoint after an interruption.",
            f"API calls per run (measured): first full run {_or(f.last_full_calls)}, latest run "
            f"{_or(f.latest_calls)}, median of {f.runs_ok} successful runs {_or(f.median_calls)}."
            if measured
            else "API calls per run: not measured yet (no database).",
        ),
        _section(
            "5. Webhooks",
            f"Events: {', '.join(WEBHOOK_EVENTS)}.",
            f"Signature: scheme {settings.webhook_scheme!r} "
            + (
                f"(HMAC-SHA256 of the raw body, base64, in {settings.webhook_signature_header})"
                if settings.webhook_scheme == "wiseflow"
                else "(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature)"
            )
            + f", compared in constant time; timestamps outside {settings.webhook_tolerance:g} s are refused; "
            f"{len(settings.webhook_secrets)} secret(s) configured for rotation.",
            "Idempotency: each event is committed to the inbox before the 200, unique on its sequence "
            "number; duplicates are answered 200 and not processed again.",
            f"Measured: {f.deliveries} deliveries, {f.events} distinct events, {f.duplicates} duplicates "
            f"absorbed, {f.dead_letters} dead letters.",
            "Fallback: polling remains the safety net; after downtime or silence longer than WISEflow's "
            "redelivery horizon (8 x 15 min) the flows active in that gap are re-fetched at once.",
        ),
        _section(
            "6. Rate limiting and retries",
            f"One shared limiter: {settings.rate_per_second}/s and {settings.rate_per_minute}/min "
            "(WISEflow allows 200/s and 5000/min), never exceeded in any sliding window; RateLimit-* "
            "headers slow it down before a 429; a 429 pauses every caller until its Retry-After (honoured "
            f"up to {settings.pause_max:g} s, SYNC_PAUSE_MAX; the pause is saved before the next request).",
            f"Retries: safe requests only (GET and the read-only searches), {retry.attempts} attempts in "
            f"all, capped exponential backoff with full jitter (base {retry.base:g} s, cap {retry.cap:g} s), "
            f"overall deadline {retry.deadline:g} s; writes are never retried automatically. A Retry-After "
            f"over {retry.retry_after_max:g} s defers the work instead of holding a task.",
            f"Measured: {f.by_status.get(429, 0)} answers 429 out of {f.requests} journalled requests.",
        ),
        _section(
            "7. Logging and monitoring",
            "Structured JSON logs (one object a line) with the response's X-Trace-Id, method, path, status, "
            "duration and attempt; tokens, secrets, query strings and personal data are never logged.",
            "OpenTelemetry traces (OTLP to Jaeger), every API span tagged wiseflow.trace_id; Prometheus "
            "/metrics; /status; `wiseflow-sync diagnose X_TRACE_ID` for self-diagnosis from the journal.",
        ),
        _section(
            "8. Error handling and resilience",
            f"Circuit breaker per API base URL: opens after {breaker.failure_threshold} consecutive "
            "failures (5xx, timeouts, refused connections) or at once on a 503 with Retry-After; stays open "
            f"for the Retry-After (up to {settings.pause_max:g} s, as a 429's) or a growing backoff (at most "
            f"{breaker.open_cap:g} s, starting afresh after a maintenance window); one probe closes "
            "it. While open no request is sent, loops skip their runs and webhooks are still accepted.",
            f"Measured: {f.by_status.get(503, 0)} answers 503 and {f.by_status.get(0, 0)} requests with no "
            f"answer; {f.grades_delivered} grades delivered, {f.grades_pending} queued.",
        ),
    ]


def _section(title: str, *lines: str) -> dict[str, Any]:
    return {"title": title, "answers": list(lines)}


def _or(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def render_markdown(sections: list[dict[str, Any]]) -> str:
    """The answers as Markdown, ready to send."""
    out = ["# WISEflow integration certification: wiseflow-sync", ""]
    for section in sections:
        out.append(f"## {section['title']}")
        out.extend(f"- {line}" for line in section["answers"])
        out.append("")
    return "\n".join(out)
