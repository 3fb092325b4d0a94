"""promtool (Debian's `prometheus` package) checks the shipped alert rules, runs their unit tests, and parses
every query of the Grafana dashboard.

The PrometheusRule is a Kubernetes resource; promtool reads plain rule files, so its `spec` (the groups)
is written to one first. The unit tests (tests/rules/alerts.test.yaml) hold every alert to a case where it
fires and one where it must not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import require_tool
from tests.unit.test_alert_rules import RULES, rules
from tests.unit.test_grafana_dashboard import queries

RULE_TESTS = Path(__file__).resolve().parents[1] / "rules" / "alerts.test.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool binary (skipped, or failed in CI, when the prometheus package is missing)."""
    return require_tool("promtool", "prometheus", "the alert rule checks and tests")


def rule_file(directory: Path, *, annotations: bool) -> Path:
    """The PrometheusRule's groups as a promtool rule file (`rules.yaml`, which the tests name)."""
    spec: dict[str, Any] = yaml.safe_load(RULES.read_text())["spec"]
    if not annotations:
        # The rule tests compare labels; annotation text and links are checked in tests/unit/test_alert_rules.
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool with `args`; its output for the assertion message."""
    return subprocess.run(  # noqa: S603 - the system's promtool on our own files
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_every_rule(promtool: str, tmp_path: Path) -> None:
    """`promtool check rules`: every expression parses and every annotation template is valid."""
    result = run(promtool, "check", "rules", rule_file(tmp_path, annotations=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_rule_tests_pass(promtool: str, tmp_path: Path) -> None:
    """`promtool test rules`: each alert fires where it should and stays quiet where it should."""
    rule_file(tmp_path, annotations=False)
    tests = shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run(promtool, "test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """The rule tests cover every alert both ways: a case with the alert expected, and one with none."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules()}
    assert (fires, quiet) == (alerts, alerts)


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each of the dashboard's queries, Grafana's variables given values, is PromQL that promtool accepts."""
    values = {"$__rate_interval": "5m", "$namespace": ".*"}
    exprs = []
    for expr in queries():
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        exprs.append(expr)
    # As recording rules: `promtool check rules` parses each expression with Prometheus's own parser.
    groups = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
