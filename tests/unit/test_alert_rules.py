"""The shipped PrometheusRule: every alert's expression names only metrics the service exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.adapters.metrics import Backlogs, ServiceMetrics, Snapshot
from service.core.webhook_figures import WebhookFigures

# The kustomize base holds it (k8s/base/prometheusrule.yaml); found wherever the layout puts it.
RULES = next((Path(__file__).parents[2] / "k8s").rglob("prometheusrule.yaml"))
_METRIC = re.compile(r"\bwiseflow_[a-z0-9_]+")


async def exported_names() -> set[str]:
    """Every series name a scrape of a fresh service shows (histograms with their suffixes)."""
    metrics = ServiceMetrics()

    async def backlogs() -> Backlogs:
        return Backlogs(last_success=0.0, inbox={"pending": 0}, outbox={"pending": 0})

    metrics.read_at_scrape(Snapshot, backlogs, WebhookFigures())
    names: set[str] = set()
    for family in text_string_to_metric_families((await metrics.render()).decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def rules() -> list[dict[str, Any]]:
    """The alerting rules of the manifest."""
    document = yaml.safe_load(RULES.read_text())
    assert (document["apiVersion"], document["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


async def test_every_alert_names_only_exported_metrics() -> None:
    """Each expression names at least one metric, and every metric it names is one /metrics exports."""
    exported = await exported_names()
    unknown = {
        rule["alert"]: sorted(set(_METRIC.findall(rule["expr"])) - exported)
        for rule in rules()
        if set(_METRIC.findall(rule["expr"])) - exported
    }
    assert unknown == {}
    assert all(_METRIC.search(rule["expr"]) for rule in rules())


def test_every_alert_has_a_name_a_severity_and_a_summary() -> None:
    """An alert that pages someone says how bad it is and what it means."""
    for rule in rules():
        assert rule["alert"].startswith("Wiseflow")
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


async def test_the_check_catches_a_misspelt_metric() -> None:
    """The name check is not vacuous: a metric the service does not export is not in the set."""
    exported = await exported_names()
    assert "wiseflow_inbox_events" in exported
    assert "wiseflow_api_requests_total" in exported
    assert "wiseflow_inbox_event" not in exported
