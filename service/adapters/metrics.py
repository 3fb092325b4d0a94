"""The service's Prometheus metrics: `prometheus_client` with one `CollectorRegistry` per service instance.

Two kinds of figures, one registry (never prometheus_client's global one: two services in one test
process must not share counts):

- counted when they happen (WISEflow requests by route template, method and status class; request
  latency; 429s; breaker transitions; sync run duration and requests per run, the last run's duration
  and the runs in a row that did not end ok): prometheus_client's own Counter, Histogram and Gauge, fed
  by the composition root's hooks (`observe_request`, `observe_run`, ...);
- read at scrape time from the objects that own them (webhook figures, breaker state, database backlogs):
  a custom collector over a `Snapshot` that `render()` reads first, awaiting the database.

The webhook ingest path counts in `WebhookFigures` (plain integers, no lock, no label lookup: the
event loop is the only writer) and is exported here by the collector.

    metrics = ServiceMetrics()
    metrics.observe_request(record)                        # the transport's on_request hook
    metrics.read_at_scrape(read_snapshot, figures)         # the composition root, once
    text = await metrics.render()                          # GET /metrics
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from service.adapters.wiseflow.records import RequestRecord, route_of
from service.core.breaker import Transition
from service.core.run_summary import RunSummary
from service.core.webhook_figures import WebhookFigures

# The text exposition format 0.0.4, which generate_latest writes (its own CONTENT_TYPE_LATEST names the
# newer 1.0.0, which older Prometheus servers and our scrapers do not ask for).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# A WISEflow call takes tens of milliseconds when well; the read timeout bounds the top.
API_LATENCY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_SECONDS_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RUN_REQUESTS_BUCKETS: Final = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
log = logging.getLogger(__name__)

# `_created` series double every counter and histogram and nobody here alerts on them. The switch is
# module-wide in prometheus_client (not per registry); this process never wants them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The in-memory figures other objects own, read when scraped."""

    breaker_open: bool = False
    runs: int = 0
    catchups: int = 0
    token_requests: int = 0
    auth_recoveries: int = 0
    paused_seconds: float = 0.0
    sink_paused: bool = False


@dataclass(frozen=True, slots=True)
class Backlogs:
    """The figures that live in the database."""

    last_success: float  # Unix time of the end of the last successful run; 0 when none yet
    inbox: Mapping[str, int] = field(default_factory=dict)
    outbox: Mapping[str, int] = field(default_factory=dict)
    withdrawn: int = 0  # withdrawals of grades ever queued for the SIS (outbox rows are never deleted)
    oldest_pending: float = 0.0  # Unix time the oldest grade still waiting for the SIS was queued; 0: none


ReadSnapshot = Callable[[], Snapshot]
ReadBacklogs = Callable[[], Awaitable[Backlogs]]


def status_class(status: int | None) -> str:
    """`2xx`, `4xx`, `5xx` ... or `none` when no answer came (timeout, refused connection)."""
    return "none" if status is None else f"{status // 100}xx"


class ServiceMetrics:
    """Every metric of one service instance, in its own registry; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_requests = Counter(
            "wiseflow_api_requests_total",
            "Requests sent to WISEflow (token requests and retries included), by route template, method "
            "and status class",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.api_latency = Histogram(
            "wiseflow_api_request_duration_seconds",
            "Seconds from sending a WISEflow request to its whole answer, by route template and method",
            ["route", "method"],
            buckets=API_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter("wiseflow_api_rate_limited_total", "429 answers from WISEflow", registry=r)
        self.transitions = Counter(
            "wiseflow_breaker_transitions_total",
            "Circuit breaker transitions, by source and target state",
            ["from_state", "to_state"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "wiseflow_sync_run_duration_seconds",
            "Duration of sync runs, by outcome",
            ["outcome"],
            buckets=RUN_SECONDS_BUCKETS,
            registry=r,
        )
        self.run_requests = Histogram(
            "wiseflow_sync_run_requests",
            "API calls per sync run, by outcome",
            ["outcome"],
            buckets=RUN_REQUESTS_BUCKETS,
            registry=r,
        )
        # For the alerts users of sync engines ask for: N runs in a row that failed, and a run much slower
        # than the day's average (which the duration histogram above gives).
        self.consecutive_failures = Gauge(
            "wiseflow_sync_consecutive_failures",
            "Sync runs in a row that ended other than ok (failed, paused or interrupted); 0 after an ok run",
            registry=r,
        )
        self.last_run_seconds = Gauge(
            "wiseflow_sync_last_run_duration_seconds",
            "Duration of the last finished sync run, whatever its outcome",
            registry=r,
        )
        self._collector: ScrapeCollector | None = None

    def observe_request(self, record: RequestRecord) -> None:
        """Count one request that left the process (the transport's `on_request` hook)."""
        route = route_of(record.path)
        self.api_requests.labels(route, record.method, status_class(record.status)).inc()
        self.api_latency.labels(route, record.method).observe(record.duration_ms / 1000)
        if record.status == 429:
            self.rate_limited.inc()

    def observe_transition(self, transition: Transition) -> None:
        """Count one breaker transition."""
        self.transitions.labels(transition.source.value, transition.target.value).inc()

    def observe_run(self, summary: RunSummary) -> None:
        """Record one finished sync run's duration and API calls, and count it into the failure streak."""
        self.run_seconds.labels(summary.outcome).observe(summary.duration)
        self.run_requests.labels(summary.outcome).observe(summary.api_calls)
        self.last_run_seconds.set(summary.duration)
        # A run paused by WISEflow (maintenance, a Retry-After) counts too: from the SIS's side nothing came.
        if summary.outcome == "ok":
            self.consecutive_failures.set(0)
        else:
            self.consecutive_failures.inc()

    def read_at_scrape(self, snapshot: ReadSnapshot, backlogs: ReadBacklogs, figures: WebhookFigures) -> None:
        """Register the scrape-time figures: in memory (`snapshot`, `figures`) and in the database."""
        if self._collector is not None:
            raise ValueError("scrape-time figures are registered already")
        self._collector = ScrapeCollector(snapshot, backlogs, figures)
        self.registry.register(self._collector)

    async def render(self) -> bytes:
        """The exposition text: reads the snapshot (awaiting the database), then every family."""
        if self._collector is not None:
            await self._collector.refresh()
        return generate_latest(self.registry)


class ScrapeCollector:
    """A prometheus_client collector over figures owned by other objects, read when scraped."""

    def __init__(self, snapshot: ReadSnapshot, backlogs: ReadBacklogs, figures: WebhookFigures) -> None:
        self._snapshot = snapshot
        self._read_backlogs = backlogs
        self._figures = figures
        self._backlogs: Backlogs | None = None

    async def refresh(self) -> None:
        """Read the database's figures; when that fails they are left out and the rest is still served."""
        try:
            self._backlogs = await self._read_backlogs()
        except Exception:
            # exc_info: the exception type reaches the log; the JSON formatter redacts its text.
            log.warning(
                "metrics: database figures unreadable", exc_info=True, extra={"event": "metrics.failed"}
            )
            self._backlogs = None

    def describe(self) -> list[Metric]:
        """Nothing ahead of time: the registry then never calls `collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every scrape-time family, from the last snapshot and the live webhook figures."""
        s, f, b = self._snapshot(), self._figures, self._backlogs
        yield CounterMetricFamily("wiseflow_sync_runs_total", "Sync runs since start", value=s.runs)
        yield GaugeMetricFamily(
            "wiseflow_breaker_open", "1 while the circuit breaker is not closed", value=float(s.breaker_open)
        )
        yield GaugeMetricFamily(
            "wiseflow_sink_paused",
            "1 while grade delivery is paused because the SIS is unwell or refuses us (one grade probes it)",
            value=float(s.sink_paused),
        )
        yield CounterMetricFamily(
            "wiseflow_token_requests_total",
            "OAuth token requests (first token and renewals)",
            value=s.token_requests,
        )
        yield CounterMetricFamily(
            "wiseflow_auth_recoveries_total",
            "401 answers cured by a new token and one replay",
            value=s.auth_recoveries,
        )
        yield CounterMetricFamily(
            "wiseflow_retry_after_paused_seconds_total",
            "Seconds every caller was paused by WISEflow's 429 Retry-After (or reset)",
            value=s.paused_seconds,
        )
        yield CounterMetricFamily(
            "wiseflow_catchups_total", "Catch-ups after a webhook blind spot", value=s.catchups
        )
        yield from _webhook_families(f)
        if b is not None:
            yield GaugeMetricFamily(
                "wiseflow_last_sync_success_timestamp_seconds",
                "Unix time of the end of the last successful sync run (0: none yet); alert when it grows old",
                value=b.last_success,
            )
            yield _by_status("wiseflow_inbox_events", "Inbox events by status", b.inbox)
            yield _by_status("wiseflow_outbox_rows", "Outbox rows by status", b.outbox)
            yield CounterMetricFamily(
                "wiseflow_grades_withdrawn_total",
                "Grades withdrawn in WISEflow whose withdrawal was queued for the SIS (explicit records)",
                value=b.withdrawn,
            )
            yield GaugeMetricFamily(
                "wiseflow_outbox_oldest_pending_timestamp_seconds",
                "Unix time the oldest grade still waiting for the SIS was queued (0: none waiting)",
                value=b.oldest_pending,
            )


def _webhook_families(f: WebhookFigures) -> Iterator[Metric]:
    yield CounterMetricFamily("wiseflow_webhook_deliveries_total", "Webhook deliveries", value=f.received)
    yield CounterMetricFamily("wiseflow_webhook_duplicates_total", "Duplicates absorbed", value=f.duplicates)
    yield CounterMetricFamily(
        "wiseflow_webhook_sequence_reused_total",
        "Webhook events stored as new although their sequence number already named another stored event",
        value=f.sequence_reused,
    )
    rejected = CounterMetricFamily(
        "wiseflow_webhook_rejected_total", "Webhook deliveries rejected, by reason", labels=["reason"]
    )
    for reason, n in sorted(f.rejected.items()):
        rejected.add_metric([reason], n)
    yield rejected
    outcomes = CounterMetricFamily(
        "wiseflow_webhook_outcomes_total",
        "Webhook deliveries answered, by outcome (accepted, duplicate, unknown, rejected)",
        labels=["outcome"],
    )
    for outcome, n in (
        ("accepted", f.accepted),
        ("duplicate", f.duplicates),
        ("unknown", f.unknown),
        ("rejected", sum(f.rejected.values())),
    ):
        outcomes.add_metric([outcome], n)
    yield outcomes
    ingest = f.ingest
    yield HistogramMetricFamily(
        "wiseflow_webhook_ingest_duration_seconds",
        "Seconds from a webhook request's handler start to its answer (verify, parse, commit)",
        buckets=ingest.cumulative(),
        sum_value=ingest.total,
    )
    yield GaugeMetricFamily(
        "wiseflow_webhook_processing_lag_seconds",
        "Seconds from receipt to processing of the last webhook event",
        value=f.lag_last,
    )


def _by_status(name: str, help_text: str, counts: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["status"])
    for status, n in sorted(counts.items()):
        family.add_metric([status], n)
    return family
