"""The certification document: one typed section per review question, figures as numbers.

`--format json` is `orjson.dumps(document)` (dataclasses serialise field by field); `--format md`
renders the same object. A figure that was not measured (no database, nothing recorded yet) is `None`,
which is `null` in JSON and "not measured" in Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Overview:
    """1. What the integration is."""

    service: str
    version: str
    purpose: str
    stack: str
    api_url: str


@dataclass(frozen=True, slots=True)
class Auth:
    """2. Authentication and headers."""

    method: str  # "oauth2_client_credentials", "api_key", or "not_configured"
    token_endpoint: str | None
    renewal: str
    client_name: str
    user_agent: str
    headers: list[str]
    token_requests: int | None
    unauthorized_answers: int | None  # 401s journalled


@dataclass(frozen=True, slots=True)
class EndpointUse:
    """3. One endpoint of the client's registry and the requests observed to it."""

    method: str
    path: str
    purpose: str
    used_by: list[str]
    observed: int | None


@dataclass(frozen=True, slots=True)
class RequestsPerRun:
    """API calls per successful sync run, counted on the wire (token requests and retries included)."""

    first_full: int | None
    latest: int | None
    median: float | None
    p95: float | None
    max: int | None


@dataclass(frozen=True, slots=True)
class Sync:
    """4. Synchronisation and polling."""

    poll_interval_s: float
    jitter: float
    dormant_interval_s: float
    reconcile_interval_s: float | None
    modified_since_filter: bool
    strategy: str
    runs: int | None
    runs_ok: int | None
    requests_per_run: RequestsPerRun
    requests_by_endpoint: dict[str, int] | None  # over the successful runs, `METHOD /route`


@dataclass(frozen=True, slots=True)
class Webhooks:
    """5. Webhooks."""

    events: list[str]
    events_source: str  # "wiseflow" (GET /webhooks) or "SYNC_WEBHOOK_EVENTS"
    scheme: str
    signature: str
    tolerance_s: float
    secrets_configured: int
    idempotency: str
    fallback: str
    deliveries: int | None
    distinct_events: int | None
    duplicates: int | None
    dead_letters: int | None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """6. Rate limiting and retries."""

    per_second: int
    per_minute: int
    wiseflow_per_second: int
    wiseflow_per_minute: int
    strategy: str
    retry_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    deadline_s: float
    retry_after_max_s: float
    pause_max_s: float
    requests: int | None
    answers_429: int | None
    shortest_wait_after_429_s: float | None
    # 429/503 answers carrying Retry-After, and those after which the next request waited it out (None:
    # no database; honoured is also None while no such answer was journalled).
    retry_after_answers: int | None
    retry_after_honoured: int | None


@dataclass(frozen=True, slots=True)
class Logging:
    """7. Logging and monitoring."""

    format: str
    request_fields: list[str]
    never_logged: list[str]
    traces: str
    traces_exported: bool
    metrics: str
    self_diagnosis: str
    journalled_requests: int | None


@dataclass(frozen=True, slots=True)
class Errors:
    """8. Error handling and resilience."""

    breaker: str
    breaker_failure_threshold: int
    breaker_open_cap_s: float
    retried: str
    answers_5xx: int | None
    answers_503: int | None
    no_answer: int | None
    grades_delivered: int | None
    grades_pending: int | None


@dataclass(frozen=True, slots=True)
class Certification:
    """The whole document: a key per review section."""

    overview: Overview
    auth: Auth
    endpoints: list[EndpointUse]
    sync: Sync
    webhooks: Webhooks
    rate_limits: RateLimits
    logging: Logging
    errors: Errors
