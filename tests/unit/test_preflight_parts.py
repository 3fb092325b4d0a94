"""The preflight's pure parts: rate-limit headers, schema problems, delivery analysis, the report."""

from __future__ import annotations

import json

import orjson
import pytest

from service.core.signatures import sign_standard, sign_wiseflow
from service.errors import ApiError, ApiUnavailable, CircuitOpen, RateLimited, ServiceError
from service.preflight import ratelimits, schemas
from service.preflight.delivery import (
    Delivery,
    check_body,
    check_sequences,
    check_signature,
    check_timestamp_skew,
    shown_headers,
    signature_like,
)
from service.preflight.endpoints import refusal_check
from service.preflight.report import Report, failed, passed, render, skipped
from service.settings import Settings, load_settings

SECRET = "unit-webhook-secret-0123"
NOW = 1_700_000_000.0


def settings(**env: str) -> Settings:
    """Settings with a webhook secret and the given overrides."""
    return load_settings({"WISEFLOW_WEBHOOK_SECRET": SECRET, **env})


def delivery(body: dict[str, object], headers: dict[str, str] | None = None, *, sign: bool = True) -> Delivery:
    """A delivery of `body`, signed the default way unless headers are given."""
    raw = orjson.dumps(body)
    if headers is None:
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["X-Wiseflow-Signature"] = sign_wiseflow(SECRET, raw)
    return Delivery("/webhooks/wiseflow", tuple(headers.items()), raw, NOW)


EVENT = {"id": "d-1", "sequence": 7, "event": "FINAL_GRADE", "timestamp": int(NOW), "data": {"flowId": 3}}


def test_stated_limits_read_wiseflow_s_names_and_ietf_policies() -> None:
    """X-RateLimit-{Second,Minute}-Limit by name; `N;w=S` policy items by their window."""
    assert ratelimits.stated_limits(
        {"X-RateLimit-Second-Limit": "200", "x-ratelimit-minute-limit": "5000"}
    ) == {
        1: 200,
        60: 5000,
    }
    assert ratelimits.stated_limits({"RateLimit-Policy": "100;w=1, 3000;w=60"}) == {1: 100, 60: 3000}
    assert ratelimits.stated_limits({"RateLimit-Limit": "200"}) == {}


def test_budgets_without_stated_limits_are_skipped_and_headers_are_reported_not_judged() -> None:
    """No limit in the headers: nothing to compare (skipped); no Remaining/Reset pair: reported, not failed,
    since the OpenAPI snapshot describes no rate-limit header to judge them against."""
    assert ratelimits.check_budgets({"RateLimit-Limit": "200"}, settings()).status == "skipped"
    check = ratelimits.check_headers({"X-Rate-Limit-Limit": "5"}, NOW)
    assert check.status == "passed"
    assert "reported, not judged" in check.detail
    assert "X-Rate-Limit-Limit: 5" in check.detail
    assert "no Remaining/Reset pair the limiter can read" in check.detail


@pytest.mark.parametrize(
    ("exc", "status", "said"),
    [
        (RateLimited("WISEflow answered 429", retry_after=12, method="GET", path="/webhooks", status=429,
                     trace_id="t-1"), "skipped", "answered 429, Retry-After 12 s, X-Trace-Id t-1"),
        (ApiUnavailable("WISEflow answered 503", retry_after=None, method="GET", path="/webhooks", status=503),
         "skipped", "answered 503; the OpenAPI snapshot does not describe it"),
        (CircuitOpen("https://wf.example", 30.0, "503 with Retry-After"), "skipped", "circuit breaker is open"),
        (ApiError("WISEflow answered 404", method="GET", path="/webhooks", status=404), "failed", "status=404"),
    ],
)  # fmt: skip
def test_answers_the_snapshot_does_not_describe_are_reported_not_judged(
    exc: ServiceError, status: str, said: str
) -> None:
    """429, 503 and an open breaker skip an endpoint's check with what was seen; a 404 still fails it."""
    check = refusal_check("GET", "/webhooks", exc)
    assert (check.name, check.status) == ("endpoint GET /webhooks", status)
    assert said in check.detail


def test_success_as_the_examples_show_it_and_in_the_schema_s_form_both_pass() -> None:
    """`"error": null` and `"data": null` (the examples) pass, as does leaving them out; a wrong type fails."""
    assert schemas.problems("flows-search-api-response", {"success": True, "data": [], "error": None}) == []
    assert schemas.problems("flows-search-api-response", {"success": True, "data": []}) == []
    assert (
        schemas.problems("success-api-response-no-data", {"success": True, "data": None, "error": None}) == []
    )
    assert schemas.problems("success-api-response-no-data", {"success": True}) == []
    # Only where an example shows null: a list endpoint's `data` stays an array.
    assert schemas.problems("flows-search-api-response", {"success": True, "data": None}) == [
        "data: expected type array"
    ]
    assert schemas.problems("webhook-api-response", {"success": True, "error": {"code": "x"}}) == [
        "error/code: expected type integer"
    ]


def test_schema_problems_name_the_place_never_the_value() -> None:
    """A wrong field is reported by its path and the rule; the value (maybe personal data) is not."""
    found = schemas.problems("license-info", {"flowTypes": [{"id": "alice@example.org", "name": "n"}]})
    assert found
    assert any(p.startswith("flowTypes/0/id: expected type integer") for p in found)
    assert "alice" not in " ".join(found)


def test_headers_are_shown_masked_but_for_harmless_ones() -> None:
    """Content-Type as it came; the signature as its length only."""
    d = delivery(EVENT)
    shown = shown_headers(d)
    assert "Content-Type: application/json" in shown
    assert "X-Wiseflow-Signature: <masked, 44 chars>" in shown
    assert d.header("x-wiseflow-signature") not in shown
    assert signature_like(d) == ["X-Wiseflow-Signature (base64 SHA-256 digest)"]


def test_the_configured_scheme_verifies_a_properly_signed_delivery() -> None:
    """Signed with the secret under the configured header: passed, naming scheme and header."""
    check = check_signature(delivery(EVENT), settings())
    assert (check.status, check.detail) == (
        "passed",
        "verified with scheme wiseflow, header X-Wiseflow-Signature and the configured secret",
    )


def test_a_standard_scheme_setting_is_told_when_the_default_scheme_verifies() -> None:
    """Configured `standard`, delivered the default way: the fix names both settings."""
    check = check_signature(delivery(EVENT), settings(WISEFLOW_WEBHOOK_SCHEME="standard"))
    assert check.status == "failed"
    assert "WISEFLOW_WEBHOOK_SCHEME=wiseflow and WISEFLOW_WEBHOOK_SIGNATURE_HEADER=X-Wiseflow-Signature" in (
        check.detail
    )


def test_standard_webhooks_headers_stand_in_for_body_fields() -> None:
    """Under the standard scheme a body without id and timestamp is accepted (the signed headers carry them)."""
    body = {"sequence": 1, "event": "FINAL_GRADE", "data": {"flowId": 3}}
    raw = orjson.dumps(body)
    headers = {
        "webhook-id": "msg-1",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": sign_standard(SECRET, "msg-1", int(NOW), raw),
    }
    d = Delivery("/", tuple(headers.items()), raw, NOW)
    std = settings(WISEFLOW_WEBHOOK_SCHEME="standard")
    assert check_signature(d, std).status == "passed"
    body_check = check_body(d, std)
    assert body_check.status == "passed"
    assert "taken from the signed headers: id" in body_check.detail
    assert check_timestamp_skew(d, std).status == "passed"


def test_body_checks_note_unknown_events_and_refuse_non_json() -> None:
    """An unknown event type passes with a note; a body that is not JSON fails."""
    check = check_body(delivery({**EVENT, "event": "TEST"}), settings())
    assert check.status == "passed"
    assert "event TEST is not one the service acts on" in check.detail
    raw = Delivery("/", (), b"not json", NOW)
    assert check_body(raw, settings()).status == "failed"


def test_whether_sequences_grow_needs_two_test_events() -> None:
    """One event: skipped, saying why; two: whether their sequences grow, and that nothing relies on it."""
    one = check_sequences([delivery(EVENT)], settings())
    assert (one.status, one.detail.startswith("not observable with one event")) == ("skipped", True)
    grow = check_sequences([delivery(EVENT), delivery({**EVENT, "sequence": 8})], settings())
    assert grow.status == "passed"
    assert "7 then 8: they grow" in grow.detail
    same = check_sequences([delivery(EVENT), delivery({**EVENT, "id": "d-2"})], settings())
    assert (same.status, "7 then 7: they do not grow. Nothing relies on it" in same.detail) == ("passed", True)


def test_timestamps_ahead_or_not_integers_are_judged() -> None:
    """A timestamp in the future is `ahead of`; a string timestamp fails as not Unix seconds."""
    ahead = check_timestamp_skew(delivery({**EVENT, "timestamp": int(NOW) + 10}), settings())
    assert (ahead.status, "10 s ahead of" in ahead.detail) == ("passed", True)
    text = check_timestamp_skew(delivery({**EVENT, "timestamp": "soon"}), settings())
    assert text.status == "failed"
    assert "bad_timestamp" in text.detail


def test_the_report_passes_unless_a_check_failed_and_renders_table_safe() -> None:
    """Skipped checks do not fail a report; a pipe in evidence stays inside its Markdown cell."""
    ok = Report("https://x/v1", "c", "2026-01-01T00:00:00Z", (passed("a", "x | y"), skipped("b", "why")))
    assert ok.passed
    assert "| a | passed | x \\| y |" in render(ok, "md")
    bad = Report("https://x/v1", "c", "t", (failed("a", "no"),))
    assert json.loads(render(bad, "json")) == {
        "passed": False,
        "checks": [{"name": "a", "status": "failed", "detail": "no"}],
    }
