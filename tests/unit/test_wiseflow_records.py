"""The client's pure helpers: answers mapped to errors, envelopes unwrapped, routes for span names."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from service.adapters.wiseflow import log_transition
from service.adapters.wiseflow.pagination import unwrap
from service.adapters.wiseflow.records import Reply, error_code, error_for, route_of
from service.core.breaker import Breaker, BreakerPolicy
from service.core.clock import ManualClock
from service.errors import ApiError, ApiUnavailable, AuthError, RateLimited


def reply(status: int, body: Any = None) -> Reply:
    """A reply to GET /flow/1."""
    return Reply("GET", "/flow/1", status, {}, body, "trace-1", 2)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RateLimited), (503, ApiUnavailable), (500, ApiUnavailable), (408, ApiUnavailable), (401, AuthError)],
)
def test_statuses_become_their_errors(status: int, kind: type[ApiError]) -> None:
    """429 RateLimited; 408 and 5xx ApiUnavailable; 401 AuthError; each with its context."""
    error = error_for(reply(status), 3.0)
    assert type(error) is kind
    assert (error.method, error.path, error.status, error.trace_id, error.attempt) == (
        "GET",
        "/flow/1",
        status,
        "trace-1",
        2,
    )


def test_other_4xx_are_plain_api_errors_with_the_reason_label_only() -> None:
    """A 404 names its reason label, never the server's free text."""
    body = {
        "success": False,
        "error": {"code": 404, "message": "Flow of Jane Doe", "errors": [{"reason": "nf"}]},
    }
    error = error_for(reply(404, body), None)
    assert (type(error), "nf" in str(error), "Jane" in str(error)) == (ApiError, True, False)


def test_oauth_error_code() -> None:
    """The OAuth error shape gives its `error` code."""
    assert error_code({"error": "invalid_client", "error_description": "x"}) == "invalid_client"


def test_unwrap_envelope_bare_array_and_plain_object() -> None:
    """Envelope -> (data, total); bare array -> (array, None); object without data -> itself."""
    envelope = {"success": True, "data": [1], "pagination": {"limit": 1, "offset": 0, "total": 5}}
    assert [unwrap(reply(200, envelope)), unwrap(reply(200, [1, 2])), unwrap(reply(200, {"id": 1}))] == [
        ([1], 5),
        ([1, 2], None),
        ({"id": 1}, None),
    ]


def test_unwrap_refuses_a_failure_envelope() -> None:
    """`success: false` in a 200 is an error, not data."""
    with pytest.raises(ApiError, match="reported a failure"):
        unwrap(reply(200, {"success": False, "error": {"errors": [{"reason": "boom"}]}}))


def test_route_of_replaces_ids() -> None:
    """Span names group by route, not by id."""
    assert route_of("/flow/12/assessments") == "/flow/{id}/assessments"


def test_each_breaker_transition_is_one_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker driven through open, half-open and closed logs one WARNING per move, naming the reason."""
    caplog.set_level(logging.DEBUG, logger="service.adapters.wiseflow")
    clock = ManualClock()
    breaker = Breaker("https://api.example/v1", BreakerPolicy(open_base=1.0), clock, log_transition)
    breaker.record_failure(breaker.acquire(), "503 answer", retry_after=2.0)
    clock.advance(2.0)
    breaker.record_success(breaker.acquire())
    lines = [
        (r.levelname, getattr(r, "from_state", None), getattr(r, "to_state", None), getattr(r, "reason", None))
        for r in caplog.records
        if getattr(r, "event", None) == "wiseflow.breaker"
    ]
    assert lines == [
        ("WARNING", "closed", "open", "503 answer with Retry-After"),
        ("WARNING", "open", "half_open", "open time elapsed: one probe allowed"),
        ("WARNING", "half_open", "closed", "probe succeeded"),
    ]
