"""The shipped PrometheusRule: every alert's expression names only metrics the service exports, and every
alert links a section of docs/runbook.md. promtool's own checks and rule tests: tests/integration/
test_alert_promtool.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.promql import exported, metric_names, unknown_names

ROOT = Path(__file__).resolve().parents[2]
# The kustomize base holds it (k8s/base/prometheusrule.yaml); found wherever the layout puts it.
RULES = next((ROOT / "k8s").rglob("prometheusrule.yaml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
BASE_ANNOTATION = "wiseflow-sync/runbook-base"


def document() -> dict[str, Any]:
    """The PrometheusRule manifest."""
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return doc


def rules() -> list[dict[str, Any]]:
    """The alerting rules of the manifest."""
    return [rule for group in document()["spec"]["groups"] for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and GitLab) give a Markdown heading: lower case, punctuation dropped, spaces `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    """The anchors of docs/runbook.md's second-level headings."""
    return {github_anchor(line[3:]) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}


async def test_every_alert_names_only_exported_metrics() -> None:
    """Each expression names at least one metric, and every metric it names is one /metrics exports."""
    known = await exported()
    unknown = {rule["alert"]: sorted(unknown_names(rule["expr"], known)) for rule in rules()}
    assert {alert: names for alert, names in unknown.items() if names} == {}
    assert all(metric_names(rule["expr"]) for rule in rules())


def test_every_alert_has_a_name_a_severity_and_a_summary() -> None:
    """An alert that pages someone says how bad it is and what it means."""
    for rule in rules():
        assert rule["alert"].startswith("Wiseflow")
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_alert_links_its_own_runbook_section() -> None:
    """runbook_url is the configured base, `#`, and the anchor of the runbook heading named after the alert."""
    base = document()["metadata"]["annotations"][BASE_ANNOTATION]
    anchors = runbook_anchors()
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{base}#{github_anchor(rule['alert'])}"
        assert github_anchor(rule["alert"]) in anchors, f"docs/runbook.md has no section {rule['alert']}"


def test_the_alerts_users_of_sync_engines_ask_for_are_there() -> None:
    """Failed runs in a row, a run much slower than usual, a grade waiting too long for the SIS."""
    by_name = {rule["alert"]: rule for rule in rules()}
    assert "wiseflow_sync_consecutive_failures" in metric_names(by_name["WiseflowSyncRunsFailing"]["expr"])
    slow = metric_names(by_name["WiseflowSyncRunSlow"]["expr"])
    assert "wiseflow_sync_last_run_duration_seconds" in slow
    assert "wiseflow_sync_run_duration_seconds_count" in slow
    waiting = by_name["WiseflowGradeWaitingTooLong"]["expr"]
    assert "wiseflow_outbox_oldest_pending_timestamp_seconds" in metric_names(waiting)


async def test_the_check_catches_a_misspelt_metric() -> None:
    """The name check is not vacuous: a misspelt name, or a histogram suffix on a gauge, is unknown."""
    known = await exported()
    assert unknown_names('sum(rate(wiseflow_api_requests_total{route="/x"}[5m]))', known) == set()
    assert unknown_names("wiseflow_sync_run_duration_seconds_bucket", known) == set()
    assert unknown_names("wiseflow_inbox_event", known) == {"wiseflow_inbox_event"}
    assert unknown_names("wiseflow_breaker_open_count", known) == {"wiseflow_breaker_open_count"}
    assert unknown_names("up", known) == {"up"}
