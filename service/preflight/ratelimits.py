"""What a normal answer's rate-limit headers say, against the budgets of the settings. Pure.

WISEflow documents 200 requests/second and 5000/minute per credential set, reported in `RateLimit-*`
(the window nearest exhaustion) and `X-RateLimit-Second-*` / `X-RateLimit-Minute-*`. The limiter reads
the Remaining/Reset pairs (`service.core.retry_after.parse_quotas`) to slow down before a 429; the
budgets `SYNC_RATE_PER_SECOND` / `SYNC_RATE_PER_MINUTE` must stay at or under the stated limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from service.core.retry_after import parse_quotas
from service.settings import Settings

from .report import Check, failed, passed, skipped

DOCUMENTED: Final = tuple(
    f"{prefix}-{part}"
    for prefix in ("RateLimit", "X-RateLimit-Second", "X-RateLimit-Minute")
    for part in ("Limit", "Remaining", "Reset")
)
# An IETF draft policy item such as "200;w=1": a limit and its window in seconds.
_POLICY_ITEM: Final = re.compile(r"^\s*([0-9]{1,9})\s*;\s*w\s*=\s*([0-9]{1,6})\s*$")
_NUMBER: Final = re.compile(r"^\s*([0-9]{1,9})\s*$")


def rate_limit_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every header whose name speaks of a rate limit, as it arrived (values are numbers, not secrets)."""
    found = [(k, v) for k, v in headers.items() if "ratelimit" in k.lower().replace("-", "").replace("_", "")]
    return [(k, v[:64]) for k, v in found]


def stated_limits(headers: Mapping[str, str]) -> dict[int, int]:
    """The limits the headers state, by window length in seconds (1 and 60 when WISEflow's names are used)."""
    lower = {k.lower(): v for k, v in headers.items()}
    limits: dict[int, int] = {}
    for name, window in (("x-ratelimit-second-limit", 1), ("x-ratelimit-minute-limit", 60)):
        match = _NUMBER.match(lower.get(name, ""))
        if match:
            limits[window] = int(match.group(1))
    for name in ("ratelimit-policy", "ratelimit-limit"):
        for item in lower.get(name, "").split(","):
            policy = _POLICY_ITEM.match(item)
            if policy:
                limits.setdefault(int(policy.group(2)), int(policy.group(1)))
    return limits


def check_headers(headers: Mapping[str, str], now_wall: float) -> Check:
    """Which rate-limit headers a normal answer carries, and whether the limiter can read them: reported.

    Never failed: the OpenAPI snapshot describes no rate-limit header (nor 429), so there is nothing to
    judge them against; what was seen, and what the limiter does with it, is the evidence to read.
    """
    name = "rate_limit_headers"
    found = rate_limit_headers(headers)
    shown = ", ".join(f"{k}: {v}" for k, v in found) or "none"
    present = {k.lower() for k, _ in found}
    missing = [h for h in DOCUMENTED if h.lower() not in present]
    absent = f"; named on UNIwise's API pages but absent: {', '.join(missing)}" if missing else ""
    if not parse_quotas(headers, now_wall):
        return passed(
            name,
            f"reported, not judged (not in the OpenAPI snapshot): {shown}{absent}; no Remaining/Reset pair "
            "the limiter can read, so it keeps to SYNC_RATE_PER_SECOND / SYNC_RATE_PER_MINUTE alone and "
            "learns of the limits from 429s",
        )
    return passed(name, f"reported (not in the OpenAPI snapshot): {shown}{absent}; the limiter reads them")


def check_budgets(headers: Mapping[str, str], settings: Settings) -> Check:
    """The settings' budgets against the per-second and per-minute limits the headers state."""
    name = "rate_budgets"
    limits = stated_limits(headers)
    budgets = (
        (1, "SYNC_RATE_PER_SECOND", settings.rate_per_second, "second"),
        (60, "SYNC_RATE_PER_MINUTE", settings.rate_per_minute, "minute"),
    )
    compared = [(var, budget, limits[w], unit) for w, var, budget, unit in budgets if w in limits]
    if not compared:
        return skipped(
            name,
            "the headers state no per-second or per-minute limit; WISEflow documents 200/s and 5000/min, "
            f"the budgets are {settings.rate_per_second}/s and {settings.rate_per_minute}/min",
        )
    over = [
        f"{var}={budget} exceeds the stated {limit}/{unit}"
        for var, budget, limit, unit in compared
        if budget > limit
    ]
    within = [
        f"{var}={budget} within {limit}/{unit}" for var, budget, limit, unit in compared if budget <= limit
    ]
    unknown = [var for w, var, _b, _u in budgets if w not in limits]
    tail = f"; no stated limit for {', '.join(unknown)}" if unknown else ""
    if over:
        return failed(
            name, "; ".join(over) + ": lower it, or expect 429s" + "".join(f"; {w}" for w in within) + tail
        )
    return passed(name, "; ".join(within) + tail)
