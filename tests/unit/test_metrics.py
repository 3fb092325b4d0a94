"""The service's metrics: prometheus_client families in a per-instance registry, scrape-time figures."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.adapters.metrics import Backlogs, ServiceMetrics, Snapshot, status_class
from service.adapters.wiseflow.records import RequestRecord
from service.core.breaker import State, Transition
from service.core.run_summary import RunSummary
from service.core.webhook_figures import BucketCounts, WebhookFigures


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client's own parser: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def record(path: str, status: int | None, ms: float = 40.0, method: str = "GET") -> RequestRecord:
    """A journal record as the transport makes one."""
    return RequestRecord(1.7e9, method, path, status, ms, 1, "x-1")


async def scrape(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The parsed `/metrics` body."""
    return samples((await metrics.render()).decode())


async def test_requests_are_counted_by_route_template_method_and_status_class() -> None:
    """Ids become {id}; 2xx/4xx/5xx/none classes; 429s have their own counter; latency is a histogram."""
    metrics = ServiceMetrics()
    metrics.observe_request(record("/flow/12/assessments", 200, 30.0))
    metrics.observe_request(record("/flow/13/assessments", 200, 70.0))
    metrics.observe_request(record("/flow/13/assessments", 429))
    metrics.observe_request(record("/flows/search", None, method="POST"))
    got = await scrape(metrics)
    route = ("route", "/flow/{id}/assessments")
    assert got[("wiseflow_api_requests_total", (("method", "GET"), route, ("status_class", "2xx")))] == 2
    assert got[("wiseflow_api_requests_total", (("method", "GET"), route, ("status_class", "4xx")))] == 1
    search = (("method", "POST"), ("route", "/flows/search"), ("status_class", "none"))
    assert got[("wiseflow_api_requests_total", search)] == 1
    assert got[("wiseflow_api_rate_limited_total", ())] == 1
    latency = "wiseflow_api_request_duration_seconds"
    assert got[(f"{latency}_count", (("method", "GET"), route))] == 3
    assert got[(f"{latency}_bucket", (("le", "0.05"), ("method", "GET"), route))] == 2
    assert got[(f"{latency}_sum", (("method", "GET"), route))] == pytest.approx(0.14)


async def test_each_instance_has_its_own_registry() -> None:
    """Two services in one process never share counts (prometheus_client's global registry is unused)."""
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_request(record("/flows/search", 200, method="POST"))
    labels = (("method", "POST"), ("route", "/flows/search"), ("status_class", "2xx"))
    assert (await scrape(first))[("wiseflow_api_requests_total", labels)] == 1
    assert ("wiseflow_api_requests_total", labels) not in await scrape(second)


async def test_runs_and_breaker_transitions_are_recorded() -> None:
    """A run's duration and API calls land in histograms by outcome; a transition counts by its states."""
    metrics = ServiceMetrics()
    metrics.observe_run(RunSummary(run_id=1, outcome="ok", api_calls=17, duration=2.5))
    metrics.observe_transition(Transition("https://x", State.CLOSED, State.OPEN, "503 answer", 10.0))
    got = await scrape(metrics)
    assert got[("wiseflow_sync_run_requests_sum", (("outcome", "ok"),))] == 17
    assert got[("wiseflow_sync_run_requests_bucket", (("le", "25.0"), ("outcome", "ok")))] == 1
    assert got[("wiseflow_sync_run_requests_bucket", (("le", "10.0"), ("outcome", "ok")))] == 0
    assert got[("wiseflow_sync_run_duration_seconds_sum", (("outcome", "ok"),))] == 2.5
    transition = (("from_state", "closed"), ("to_state", "open"))
    assert got[("wiseflow_breaker_transitions_total", transition)] == 1


async def test_scrape_time_figures_are_read_when_scraped() -> None:
    """Snapshot, database backlogs and webhook figures are read at render time, not at registration."""
    metrics = ServiceMetrics()
    figures = WebhookFigures()
    state = {"runs": 0}

    async def backlogs() -> Backlogs:
        return Backlogs(last_success=1.7e9, inbox={"pending": 2, "dead": 1}, outbox={"pending": 4}, withdrawn=3)

    metrics.read_at_scrape(
        lambda: Snapshot(runs=state["runs"], token_requests=3, sink_paused=True), backlogs, figures
    )
    state["runs"] = 5
    figures.received, figures.accepted, figures.duplicates, figures.sequence_reused = 4, 2, 1, 1
    figures.reject("bad_signature")
    figures.ingest.observe(0.002)
    got = await scrape(metrics)
    assert got[("wiseflow_sync_runs_total", ())] == 5
    assert got[("wiseflow_token_requests_total", ())] == 3
    assert got[("wiseflow_sink_paused", ())] == 1
    assert got[("wiseflow_inbox_events", (("status", "dead"),))] == 1
    assert got[("wiseflow_outbox_rows", (("status", "pending"),))] == 4
    assert got[("wiseflow_grades_withdrawn_total", ())] == 3
    assert got[("wiseflow_last_sync_success_timestamp_seconds", ())] == 1.7e9
    assert got[("wiseflow_webhook_outcomes_total", (("outcome", "accepted"),))] == 2
    assert got[("wiseflow_webhook_sequence_reused_total", ())] == 1
    assert got[("wiseflow_webhook_outcomes_total", (("outcome", "rejected"),))] == 1
    assert got[("wiseflow_webhook_rejected_total", (("reason", "bad_signature"),))] == 1
    assert got[("wiseflow_webhook_ingest_duration_seconds_bucket", (("le", "0.0025"),))] == 1
    assert got[("wiseflow_webhook_ingest_duration_seconds_bucket", (("le", "0.001"),))] == 0


async def test_unreadable_database_leaves_the_rest_of_the_scrape_intact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing database read drops its families, logs a warning, and serves every other figure."""
    metrics = ServiceMetrics()

    async def broken() -> Backlogs:
        raise RuntimeError("database is locked")

    metrics.read_at_scrape(lambda: Snapshot(runs=2), broken, WebhookFigures())
    with caplog.at_level(logging.WARNING):
        got = await scrape(metrics)
    assert got[("wiseflow_sync_runs_total", ())] == 2
    assert not any(name.startswith("wiseflow_inbox_events") for name, _ in got)
    assert [r.message for r in caplog.records] == ["metrics: database figures unreadable"]


async def test_counter_families_keep_their_total_suffix_and_no_created_series() -> None:
    """Running totals render as `_total` counters, with no `_created` companions."""
    metrics = ServiceMetrics()
    metrics.observe_request(record("/flows/search", 200, method="POST"))
    text = (await metrics.render()).decode()
    assert "# TYPE wiseflow_api_requests_total counter\n" in text
    assert "_created" not in text


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (204, "2xx"), (401, "4xx"), (503, "5xx"), (None, "none")]
)
def test_status_class(status: int | None, expected: str) -> None:
    """A status becomes its class; no answer is `none`."""
    assert status_class(status) == expected


def test_bucket_counts_put_a_value_on_a_bound_in_that_bucket() -> None:
    """Le semantics: a value equal to a bound counts in it; over the last bound only in +Inf."""
    buckets = BucketCounts((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 3.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert buckets.total == pytest.approx(4.6)


async def test_runs_not_ok_in_a_row_are_counted_until_an_ok_run() -> None:
    """Failed, paused and interrupted runs lengthen the streak, an ok run resets it; the last duration kept."""
    metrics = ServiceMetrics()
    streak = []
    for outcome in ("failed", "paused", "interrupted", "ok", "paused"):
        metrics.observe_run(RunSummary(run_id=1, outcome=outcome, duration=4.0))
        streak.append((await scrape(metrics))[("wiseflow_sync_consecutive_failures", ())])
    assert streak == [1, 2, 3, 0, 1]
    metrics.observe_run(RunSummary(run_id=2, outcome="ok", duration=7.5))
    got = await scrape(metrics)
    assert got[("wiseflow_sync_last_run_duration_seconds", ())] == 7.5
    assert got[("wiseflow_sync_consecutive_failures", ())] == 0


async def test_the_oldest_waiting_grade_is_exported_as_a_timestamp() -> None:
    """When the oldest grade still waiting for the SIS was queued; 0 when nothing waits."""
    metrics = ServiceMetrics()
    oldest = {"at": 1.7e9}

    async def backlogs() -> Backlogs:
        return Backlogs(last_success=0.0, outbox={"pending": 1}, oldest_pending=oldest["at"])

    metrics.read_at_scrape(Snapshot, backlogs, WebhookFigures())
    assert (await scrape(metrics))[("wiseflow_outbox_oldest_pending_timestamp_seconds", ())] == 1.7e9
    oldest["at"] = 0.0
    assert (await scrape(metrics))[("wiseflow_outbox_oldest_pending_timestamp_seconds", ())] == 0
