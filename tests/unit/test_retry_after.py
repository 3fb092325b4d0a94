"""Retry-After and rate-limit header parsing: accepted forms, and garbage handled without raising."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.retry_after import (
    MAX_WAIT,
    Quota,
    parse_quotas,
    parse_reset,
    parse_retry_after,
    rate_limited_wait,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def http_date(unix: float) -> str:
    """An IMF-fixdate as servers send it."""
    return format_datetime(datetime.fromtimestamp(unix, tz=UTC), usegmt=True)


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5)])
def test_delta_seconds(value: str, expected: float) -> None:
    """Delta-seconds are read as seconds to wait."""
    assert expected == parse_retry_after(value, NOW)


def test_future_http_date() -> None:
    """An IMF-fixdate 90 s ahead means 90 s to wait."""
    assert parse_retry_after(http_date(NOW + 90), NOW) == 90.0


def test_obsolete_date_formats() -> None:
    """RFC 9110 asks recipients to accept the RFC 850 and asctime forms too."""
    rfc850 = parse_retry_after("Tuesday, 14-Nov-23 22:14:20 GMT", NOW)
    asctime = parse_retry_after("Tue Nov 14 22:14:20 2023", NOW)
    assert (rfc850, asctime) == (60.0, 60.0)


def test_past_http_date_means_no_wait() -> None:
    """A date in the past says "now": 0, never negative."""
    assert parse_retry_after(http_date(NOW - 3600), NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "  ",
        "-5",
        "+5",
        "1e3",
        "nan",
        "inf",
        "-inf",
        "soon",
        "5 seconds",
        "0x10",
        "Mon, 99 Foo 2023",
        "1.2.3",
    ],
)
def test_garbage_is_none(value: str | None) -> None:
    """Negative, signed, exponent, non-numeric and broken dates are rejected as None."""
    assert parse_retry_after(value, NOW) is None


def test_huge_values_are_clamped() -> None:
    """A huge delta or a far-future date stays finite: clamped to MAX_WAIT."""
    assert (
        parse_retry_after("9" * 400, NOW),
        parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW),
    ) == (MAX_WAIT, MAX_WAIT)


@given(st.text(max_size=60))
def test_any_text_is_safe(value: str) -> None:
    """No input raises; the result is None or a wait within [0, MAX_WAIT]."""
    result = parse_retry_after(value, NOW)
    assert result is None or 0.0 <= result <= MAX_WAIT


@given(st.integers(min_value=0, max_value=10**30))
def test_any_non_negative_integer_is_a_bounded_wait(seconds: int) -> None:
    """Every delta-seconds value is accepted and bounded."""
    assert min(float(seconds), MAX_WAIT) == parse_retry_after(str(seconds), NOW)


def test_reset_as_unix_time() -> None:
    """A reset large enough to be a Unix time is read as one."""
    assert (parse_reset(str(int(NOW + 30)), NOW), parse_reset("2", NOW)) == (30.0, 2.0)


def test_quotas_from_both_header_families() -> None:
    """RateLimit-* and X-RateLimit-{Second,Minute}-* pairs are read, case-insensitively."""
    headers = {
        "ratelimit-remaining": "10",
        "RateLimit-Reset": "1",
        "X-RateLimit-Second-Remaining": "3",
        "X-RateLimit-Second-Reset": "1",
        "X-RateLimit-Minute-Remaining": "400",
        "X-RateLimit-Minute-Reset": "42",
        "X-RateLimit-Minute-Limit": "5000",
    }
    expected = [Quota("ratelimit", 10, 1.0), Quota("second", 3, 1.0), Quota("minute", 400, 42.0)]
    assert expected == parse_quotas(headers, NOW)


def test_incomplete_or_garbage_quotas_are_ignored() -> None:
    """A Remaining without its Reset, or a non-integer count, says nothing usable."""
    headers = {
        "RateLimit-Remaining": "5",
        "X-RateLimit-Second-Remaining": "2.5",
        "X-RateLimit-Second-Reset": "1",
    }
    assert parse_quotas(headers, NOW) == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7", "RateLimit-Reset": "30", "RateLimit-Remaining": "0"}, 7.0),
        ({"RateLimit-Reset": "30", "RateLimit-Remaining": "0", "X-RateLimit-Second-Reset": "1"}, 30.0),
        ({"RateLimit-Reset": "12"}, 12.0),
        ({"ratelimit-reset": "12", "X-RateLimit-Minute-Reset": "40"}, 12.0),
        ({"X-RateLimit-Second-Reset": "1", "X-RateLimit-Minute-Reset": "40"}, 40.0),
        ({"X-RateLimit-Second-Remaining": "0", "X-RateLimit-Second-Reset": "1", "RateLimit-Reset": "9"}, 1.0),
        ({"Retry-After": "soon", "RateLimit-Reset": "3"}, 3.0),
        ({"Retry-After": "-1"}, None),
        ({}, None),
    ],
)
def test_what_a_429_asks_us_to_wait(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After first, then an exhausted window's reset, then a bare RateLimit-Reset, else None."""
    assert expected == rate_limited_wait(headers, NOW)


@given(st.dictionaries(st.sampled_from(["Retry-After", "RateLimit-Reset", "RateLimit-Remaining"]), st.text()))
def test_any_429_headers_give_none_or_a_bounded_wait(headers: dict[str, str]) -> None:
    """No header values make the 429 wait raise, go negative or exceed MAX_WAIT."""
    wait = rate_limited_wait(headers, NOW)
    assert wait is None or 0.0 <= wait <= MAX_WAIT
