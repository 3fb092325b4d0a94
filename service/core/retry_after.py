"""Parsing what the server says about waiting: `Retry-After` (RFC 9110 10.2.3) and the rate-limit headers.

Every parser here is total: garbage never raises, it returns None ("the server said nothing usable")
and the caller falls back (Retry-After -> RateLimit-Reset -> backoff). Results are seconds from now:

- delta-seconds ``"120"`` -> 120.0; a decimal ``"1.5"`` is accepted too (lenient: some servers send it);
- an HTTP-date (IMF-fixdate, RFC 850 or asctime) -> seconds until then, and 0.0 if it is in the past;
- negative, signed, exponent, ``nan``/``inf``, empty or unparsable -> None;
- anything longer than `MAX_WAIT` (one day) is clamped to `MAX_WAIT`: the caller compares the result with
  its own maximum and defers the work, so a year-long or overflowing value only has to stay finite.

`bounded_pause` is the one pause policy of the process, for a 429 and a 503 alike: the server's wait is
honoured up to `SYNC_PAUSE_MAX`, and a longer one waits that maximum (the caller logs it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

MAX_WAIT: Final = 86_400.0
# Digits with an optional fraction: no sign, no exponent, no "inf"/"nan" (float() would accept those).
_DELTA: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# RateLimit-Reset is delta-seconds in the IETF draft, but some servers send a Unix time; no delta is
# ever this large (2001-09-09), so a value beyond it is read as a timestamp.
_UNIX_TIME_FLOOR: Final = 1_000_000_000.0


def _parse_number(value: str | None) -> float | None:
    """A non-negative decimal number, unclamped but finite; None for anything else."""
    if value is None:
        return None
    text = value.strip()
    if not _DELTA.fullmatch(text):
        return None
    # Count digits before float(): "9" * 400 would become inf; 1e15 s is past any wait anyway.
    if len(text.split(".")[0]) > 15:
        return 1e15
    return float(text)


def parse_delta_seconds(value: str | None) -> float | None:
    """Non-negative delta-seconds, clamped to `MAX_WAIT`; None for anything else."""
    number = _parse_number(value)
    return None if number is None else min(number, MAX_WAIT)


def bounded_pause(asked: float, maximum: float) -> float:
    """How long to pause when the server asks for `asked` seconds: at least 0, at most `maximum`."""
    return min(max(asked, 0.0), maximum)


def parse_http_date(value: str, now_wall: float) -> float | None:
    """Seconds from `now_wall` until the HTTP-date `value` (0.0 if past); None when it is no date."""
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # asctime carries no zone; RFC 9110 says HTTP-dates are always UTC.
        when = when.replace(tzinfo=UTC)
    try:
        delta = when.timestamp() - now_wall
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(delta, 0.0), MAX_WAIT)


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """`Retry-After` as seconds to wait from `now_wall` (Unix seconds); None when absent or unusable."""
    if value is None or value.strip() == "":
        return None
    delta = parse_delta_seconds(value)
    if delta is not None:
        return delta
    if value.strip()[:1].isdigit() or value.strip()[:1] in "+-.":
        # A malformed number ("-5", "1e3") is not a date; do not let the lenient date parser guess.
        return None
    return parse_http_date(value, now_wall)


@dataclass(frozen=True, slots=True)
class Quota:
    """One rate-limit window as the server reports it: `remaining` requests until `reset` seconds from now."""

    scope: str
    remaining: int
    reset: float


def parse_reset(value: str | None, now_wall: float) -> float | None:
    """A `*-Reset` header: delta-seconds, or a Unix time when the number is that large."""
    number = _parse_number(value)
    if number is None:
        return None
    if number >= _UNIX_TIME_FLOOR:
        number -= now_wall
    return min(max(number, 0.0), MAX_WAIT)


def parse_quotas(headers: Mapping[str, str], now_wall: float) -> list[Quota]:
    """Every complete Remaining/Reset pair among `RateLimit-*` and `X-RateLimit-{Second,Minute}-*`."""
    lower = {k.lower(): v for k, v in headers.items()}
    quotas: list[Quota] = []
    for scope, prefix in (
        ("ratelimit", "ratelimit-"),
        ("second", "x-ratelimit-second-"),
        ("minute", "x-ratelimit-minute-"),
    ):
        remaining = _parse_number(lower.get(prefix + "remaining"))
        reset = parse_reset(lower.get(prefix + "reset"), now_wall)
        if remaining is not None and reset is not None and remaining == int(remaining):
            quotas.append(Quota(scope=scope, remaining=int(remaining), reset=reset))
    return quotas


def rate_limited_wait(headers: Mapping[str, str], now_wall: float) -> float | None:
    """What a 429 asks us to wait: Retry-After, else the reset of an exhausted window, else a bare reset.

    A server may send `RateLimit-Reset` without `RateLimit-Remaining` on its 429; the reset still says
    when the window reopens. With several bare resets and no way to tell which window is full, the
    longest wins: waiting too long costs a little speed, waiting too short costs another 429.
    None when the answer says nothing usable (the caller backs off on its own schedule).
    """
    retry_after = parse_retry_after(headers.get("Retry-After"), now_wall)
    if retry_after is not None:
        return retry_after
    exhausted = [q.reset for q in parse_quotas(headers, now_wall) if q.remaining <= 0]
    if exhausted:
        return max(exhausted)
    lower = {k.lower(): v for k, v in headers.items()}
    general = parse_reset(lower.get("ratelimit-reset"), now_wall)
    if general is not None:
        return general
    resets = [parse_reset(lower.get(f"x-ratelimit-{scope}-reset"), now_wall) for scope in ("second", "minute")]
    known = [r for r in resets if r is not None]
    return max(known) if known else None
