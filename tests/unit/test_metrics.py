"""The Prometheus registry: exposition format, escaping, label sets, callback gauges."""

from __future__ import annotations

import logging
import math

import pytest

from service.adapters.metrics import (
    Metrics,
    escape_help,
    escape_label_value,
    format_value,
)


def test_counter_renders_help_type_and_labelled_samples_sorted() -> None:
    """A labelled counter renders HELP, TYPE, then one line per label set, in stable order."""
    metrics = Metrics()
    calls = metrics.counter("wiseflow_api_requests_total", "Requests sent to WISEflow.", ["method", "status"])
    calls.inc(method="GET", status=200)
    calls.inc(2, method="GET", status=200)
    calls.inc(method="POST", status="429")
    calls.inc(method="GET", status=503)
    expected = (
        "# HELP wiseflow_api_requests_total Requests sent to WISEflow.\n"
        "# TYPE wiseflow_api_requests_total counter\n"
        'wiseflow_api_requests_total{method="GET",status="200"} 3\n'
        'wiseflow_api_requests_total{method="GET",status="503"} 1\n'
        'wiseflow_api_requests_total{method="POST",status="429"} 1\n'
    )
    assert metrics.render() == expected


def test_unlabelled_series_start_at_zero_and_families_keep_registration_order() -> None:
    """An unlabelled counter shows 0 before its first increment; families render in registration order."""
    metrics = Metrics()
    metrics.gauge("b_inflight", "In flight.")
    metrics.counter("a_events_total", "Events.")
    expected = (
        "# HELP b_inflight In flight.\n# TYPE b_inflight gauge\nb_inflight 0\n"
        "# HELP a_events_total Events.\n# TYPE a_events_total counter\na_events_total 0\n"
    )
    assert metrics.render() == expected


def test_labelled_family_without_samples_renders_only_its_header() -> None:
    """A labelled family nobody has touched yet has HELP and TYPE and no sample lines."""
    metrics = Metrics()
    metrics.counter("x_total", "X.", ["kind"])
    assert metrics.render() == "# HELP x_total X.\n# TYPE x_total counter\n"


def test_gauge_set_inc_dec() -> None:
    """A gauge moves both ways and set overrides."""
    gauge = Metrics().gauge("breaker_open", "1 when open.", ["target"])
    gauge.set(5, target="wiseflow")
    gauge.inc(target="wiseflow")
    gauge.dec(2.5, target="wiseflow")
    assert gauge.value(target="wiseflow") == 3.5
    gauge.set(0, target="wiseflow")
    assert gauge.value(target="wiseflow") == 0


def test_label_values_and_help_are_escaped() -> None:
    """Backslash, double quote and newline are escaped in label values; backslash and newline in HELP."""
    metrics = Metrics()
    errors = metrics.counter("errs_total", 'Errors \\ by "kind"\nsecond line', ["detail"])
    errors.inc(detail='a "quoted" \\path\nnext')
    expected = (
        '# HELP errs_total Errors \\\\ by "kind"\\nsecond line\n'
        "# TYPE errs_total counter\n"
        'errs_total{detail="a \\"quoted\\" \\\\path\\nnext"} 1\n'
    )
    assert metrics.render() == expected


def test_escape_helpers_directly() -> None:
    """The escaping helpers follow the exposition format's rules exactly."""
    assert escape_label_value('\\"\n') == '\\\\\\"\\n'
    assert escape_help('\\"\n') == '\\\\"\\n'


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3.0, "3"), (0.25, "0.25"), (-2, "-2"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_values_are_formatted_as_prometheus_reads_them(value: float, expected: str) -> None:
    """Whole numbers without a decimal point; infinities and NaN in Prometheus spelling."""
    assert format_value(value) == expected


def test_wrong_label_set_is_rejected() -> None:
    """Missing or extra labels raise instead of silently creating a new series."""
    calls = Metrics().counter("c_total", "C.", ["method"])
    with pytest.raises(ValueError, match="takes labels"):
        calls.inc(status="200")
    with pytest.raises(ValueError, match="takes labels"):
        calls.inc(method="GET", status="200")


def test_counters_cannot_decrease() -> None:
    """A negative increment is refused: counters only go up."""
    with pytest.raises(ValueError, match="cannot decrease"):
        Metrics().counter("c_total", "C.").inc(-1)


@pytest.mark.parametrize(
    ("name", "labels"),
    [("bad-name", ()), ("9lives", ()), ("ok_total", ("bad-label",)), ("ok_total", ("__reserved",))],
)
def test_invalid_names_are_refused(name: str, labels: tuple[str, ...]) -> None:
    """Metric and label names outside Prometheus's grammar are refused at registration."""
    with pytest.raises(ValueError, match="invalid"):
        Metrics().counter(name, "H.", labels)


def test_duplicate_registration_is_refused() -> None:
    """Two families with one name would render an invalid exposition; the second is refused."""
    metrics = Metrics()
    metrics.counter("dup_total", "D.")
    with pytest.raises(ValueError, match="already registered"):
        metrics.gauge("dup_total", "D.")


def test_gauge_fn_reads_its_callback_at_render_time() -> None:
    """A callback gauge shows the value its function returns when rendered, not when registered."""
    metrics = Metrics()
    figures = {"pending": 1.0}
    metrics.gauge_fn("outbox_pending", "Grades waiting.", lambda: figures["pending"])
    figures["pending"] = 7.0
    assert (
        metrics.render()
        == "# HELP outbox_pending Grades waiting.\n# TYPE outbox_pending gauge\noutbox_pending 7\n"
    )


def test_labelled_gauge_fn_accepts_tuple_and_string_keys() -> None:
    """A labelled callback returns a number per label-value tuple (or per string for one label)."""
    metrics = Metrics()
    metrics.gauge_fn("inbox_events", "Events by state.", lambda: {"done": 3, "dead": 1}, ["state"])
    metrics.gauge_fn("flows", "Flows.", lambda: {("active", "x"): 2}, ["state", "kind"])
    text = metrics.render()
    assert 'inbox_events{state="dead"} 1\ninbox_events{state="done"} 3\n' in text
    assert 'flows{state="active",kind="x"} 2\n' in text


async def test_render_async_awaits_async_callbacks() -> None:
    """Database figures come from coroutines; render_async awaits them."""
    metrics = Metrics()

    async def pending() -> float:
        return 4.0

    metrics.gauge_fn("outbox_pending", "Grades waiting.", pending)
    metrics.counter("c_total", "C.").inc(2)
    text = await metrics.render_async()
    assert "outbox_pending 4\n" in text
    assert "c_total 2\n" in text


def test_render_refuses_async_callbacks() -> None:
    """The sync render cannot await: it raises (and closes the coroutine, so no warning leaks)."""
    metrics = Metrics()

    async def pending() -> float:
        return 4.0

    metrics.gauge_fn("outbox_pending", "Grades waiting.", pending)
    with pytest.raises(TypeError, match="render_async"):
        metrics.render()


async def test_failing_callback_leaves_the_rest_of_the_scrape_intact(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises yields no samples for its family, a warning, and every other family intact."""
    metrics = Metrics()

    async def broken() -> float:
        raise RuntimeError("database is locked")

    metrics.gauge_fn("broken", "Broken.", broken)
    metrics.gauge_fn("wrong_shape", "Labelled but returns a number.", lambda: 1.0, ["state"])
    metrics.counter("ok_total", "Fine.").inc()
    with caplog.at_level(logging.WARNING):
        text = await metrics.render_async()
    assert "# HELP broken Broken.\n# TYPE broken gauge\n# HELP wrong_shape" in text
    assert "ok_total 1\n" in text
    assert [r.metric for r in caplog.records] == ["broken", "wrong_shape"]


def test_a_callback_counter_renders_as_a_counter_and_needs_total() -> None:
    """counter_fn: TYPE counter, value read at render time; a name without _total is refused."""
    m = Metrics()
    total = [3]
    m.counter_fn("jobs_done_total", "Jobs done", lambda: float(total[0]))
    total[0] = 5
    assert m.render() == "# HELP jobs_done_total Jobs done\n# TYPE jobs_done_total counter\njobs_done_total 5\n"
    with pytest.raises(ValueError, match="_total"):
        m.counter_fn("jobs_done", "Jobs done", lambda: 1.0)
