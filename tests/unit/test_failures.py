"""The one error policy: each failure has one verdict, and its description is safe to log."""

from __future__ import annotations

import pytest

from service.core.failures import Verdict, classify, describe, needs_operator, retry_after
from service.errors import (
    ApiError,
    ApiUnavailable,
    AuthError,
    CircuitOpen,
    ConfigError,
    RateLimited,
    SinkError,
    StoreError,
)


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (CircuitOpen("http://api", 30.0, "maintenance"), Verdict.STOP_AND_WAIT),
        (RateLimited("slow down", retry_after=60.0, status=429), Verdict.STOP_AND_WAIT),
        (ApiUnavailable("down", status=503), Verdict.STOP_AND_WAIT),
        (AuthError("credentials refused", status=400), Verdict.STOP_AND_WAIT),
        (StoreError("database full"), Verdict.RETRY_ITEM_LATER),
        (OSError("No space left on device"), Verdict.RETRY_ITEM_LATER),
        (ApiError("not found", status=404), Verdict.BLAME_ITEM),
        (SinkError("refused", status=422), Verdict.BLAME_ITEM),
        (SinkError("refused", status=400), Verdict.BLAME_ITEM),
        (SinkError("refused", status=409), Verdict.BLAME_ITEM),
        (SinkError("too large", status=413, body_size=20_000), Verdict.BLAME_ITEM),
        # The SIS or our configuration of it is wrong, for every grade alike: delivery pauses, no row blamed.
        (SinkError("credentials", status=401), Verdict.STOP_AND_WAIT),
        (SinkError("forbidden", status=403), Verdict.STOP_AND_WAIT),
        (SinkError("wrong path", status=404), Verdict.STOP_AND_WAIT),
        (SinkError("wrong method", status=405), Verdict.STOP_AND_WAIT),
        (SinkError("limit too low", status=413, body_size=200), Verdict.STOP_AND_WAIT),
        (SinkError("redirect", status=301), Verdict.STOP_AND_WAIT),
        (SinkError("timeout", status=408), Verdict.STOP_AND_WAIT),
        (SinkError("slow down", status=429, retry_after=5.0), Verdict.STOP_AND_WAIT),
        (SinkError("down", status=503), Verdict.STOP_AND_WAIT),
        (SinkError("unreachable: ClientConnectorError"), Verdict.STOP_AND_WAIT),
        (KeyError("flowId"), Verdict.BLAME_ITEM),
        (ConfigError("X", "bad"), Verdict.BLAME_ITEM),
    ],
)
def test_each_failure_has_one_verdict(error: Exception, verdict: Verdict) -> None:
    """WISEflow-wide failures stop and wait, our database retries the item later, the rest is the item's."""
    assert classify(error) is verdict


def test_only_refused_credentials_need_an_operator() -> None:
    """Waiting cures a pause or a maintenance window, not refused credentials."""
    assert needs_operator(AuthError("refused", status=400))
    assert not needs_operator(ApiUnavailable("down", retry_after=5.0))


def test_retry_after_is_read_from_the_error_when_it_carries_one() -> None:
    """The wait WISEflow (or the breaker) asked for, else None."""
    assert retry_after(CircuitOpen("http://api", 12.5, "open")) == 12.5
    assert retry_after(ApiUnavailable("down")) is None
    assert retry_after(ValueError("x")) is None


def test_descriptions_never_quote_foreign_messages() -> None:
    """Our errors keep their (safe) message; others are named by type, since theirs may quote data."""
    assert describe(ApiError("refused", status=422)) == "ApiError: refused | status=422 | attempt=1"
    assert describe(ValueError("participant jane@example.org")) == "unexpected data from WISEflow (ValueError)"
    assert describe(RuntimeError("token abc")) == "RuntimeError"
    assert len(describe(ApiError("x" * 2000))) == 500
