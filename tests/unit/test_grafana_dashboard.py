"""The Grafana dashboard shipped in the kustomize base: a ConfigMap for the dashboard sidecar, and queries
that name only metrics `/metrics` exports. promtool parses every query: tests/integration/test_alert_promtool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.promql import exported, metric_names, unknown_names

BASE = Path(__file__).resolve().parents[2] / "k8s" / "base"
DASHBOARD = BASE / "grafana-dashboard.json"
# Grafana's own template query: label_values(SELECTOR, LABEL), where only SELECTOR is PromQL.
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),)?\s*(?P<label>\w+)\s*\)$")
# What the dashboard is for: each topic by one metric its panels must read.
TOPICS = {
    "requests by route and status": "wiseflow_api_requests_total",
    "latency": "wiseflow_api_request_duration_seconds_bucket",
    "rate-limit answers": "wiseflow_api_rate_limited_total",
    "rate-limit pauses": "wiseflow_retry_after_paused_seconds_total",
    "breaker state": "wiseflow_breaker_open",
    "runs and their outcomes": "wiseflow_sync_run_duration_seconds_count",
    "webhook intake": "wiseflow_webhook_outcomes_total",
    "webhook rejections": "wiseflow_webhook_rejected_total",
    "inbox backlog": "wiseflow_inbox_events",
    "outbox backlog": "wiseflow_outbox_rows",
    "SIS delivery paused": "wiseflow_sink_paused",
    "time since the last good sync": "wiseflow_last_sync_success_timestamp_seconds",
}


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> dict[str, list[str]]:
    """Every panel's PromQL expressions, by panel title."""
    return {
        panel["title"]: [target["expr"] for target in panel.get("targets", [])]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    }


def template_selectors() -> list[str]:
    """The PromQL selectors of the dashboard's `label_values(...)` variables."""
    selectors = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query)
        assert match is not None, f"variable {variable['name']}: not a label_values() query: {query}"
        assert match["selector"], f"{variable['name']}: label_values without a metric reads every series"
        selectors.append(match["selector"])
    return selectors


def queries() -> list[str]:
    """Every PromQL expression of the dashboard: panels' targets and the variables' selectors."""
    return [expr for exprs in panel_queries().values() for expr in exprs] + template_selectors()


def test_the_base_ships_it_as_a_configmap_for_the_grafana_sidecar() -> None:
    """A configMapGenerator of the base makes it a ConfigMap labelled grafana_dashboard: "1", one JSON file."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "wiseflow-sync-dashboard"]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    assert generator["files"] == ["wiseflow-sync.json=grafana-dashboard.json"]
    assert dashboard()["uid"] == "wiseflow-sync"


def test_every_panel_queries_the_chosen_prometheus() -> None:
    """Each panel has at least one query, and every panel and query uses the `datasource` variable."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


async def test_every_query_names_only_exported_metrics() -> None:
    """Every panel query and variable selector names at least one metric, each one a live scrape exports."""
    known = await exported()
    unknown = {expr: sorted(unknown_names(expr, known)) for expr in queries() if unknown_names(expr, known)}
    assert unknown == {}
    assert all(metric_names(expr) for expr in queries())


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    """API requests, latency, rate limits, breaker, runs, webhooks, backlogs, time since the last good sync."""
    read = set().union(*(metric_names(expr) for expr in queries()))
    assert {topic: metric for topic, metric in TOPICS.items() if metric not in read} == {}
