"""Retry policy: capped exponential backoff with full jitter, and which requests may be retried at all.

`Backoff` is the one backoff of the service: the WISEflow client's `RetryPolicy`, the inbox worker's
`WorkerPolicy` and the outbox deliverer's `DeliveryPolicy` each hold one.

Pure: the random source is a parameter, so tests pass a seeded `random.Random` and never sleep.
The shape follows stamina's `_compute_backoff`: a free function with explicit parameters, safe for any
attempt number (2 ** 10_000 would overflow a float; we never compute it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from service.settings import Settings

# RFC 9110 and WISEflow's own advice: these answers say "try again later", not "your request is wrong".
# 500 too: for a safe request it is the commonest transient fault, and one of them ending a whole sync run
# costs far more than a jittered retry (the breaker still counts it, so a failing API is not hammered).
RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
# POST endpoints that only read: safe to repeat although the method is not.
READ_ONLY_POSTS: Final = frozenset({"/flows/search", "/participation-events"})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class Random(Protocol):
    """The part of `random.Random` the policies use."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: after attempt n, a wait drawn uniformly below
    `min(cap, base * 2 ** (n - 1))`, and never shorter than `floor`."""

    base: float
    cap: float
    # The shortest wait; 0 leaves full jitter whole. Each policy says which floor it takes, and why.
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:  # also rejects NaN
            raise ValueError("Backoff needs 0 < base <= cap")
        if not 0 <= self.floor <= self.cap:
            raise ValueError("Backoff needs 0 <= floor <= cap")

    def delay(self, attempt: int, rng: Random) -> float:
        """The wait after failed attempt number `attempt` (1-based): in [floor, cap]."""
        return max(self.floor, compute_backoff(attempt, base=self.base, cap=self.cap, rng=rng))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a safe call is retried: `attempts` in all, waits of `backoff`, all within `deadline`."""

    attempts: int = 5
    # No floor of its own: the callers take the server's Retry-After, when it gives one, as the floor.
    backoff: Backoff = Backoff(base=0.5, cap=30.0)
    deadline: float = 120.0
    # A Retry-After longer than this ends the call (RateLimited / ApiUnavailable) so the scheduler defers.
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.deadline <= 0:
            raise ValueError("RetryPolicy needs attempts >= 1 and a positive deadline")
        if self.retry_after_max < 0:
            raise ValueError("RetryPolicy.retry_after_max must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy of `SYNC_RETRY_*`, `SYNC_RETRY_AFTER_MAX` and `SYNC_CALL_DEADLINE`."""
        return cls(
            attempts=settings.retry_attempts,
            backoff=Backoff(base=settings.retry_base, cap=max(settings.retry_cap, settings.retry_base)),
            deadline=settings.call_deadline,
            retry_after_max=settings.retry_after_max,
        )


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """`min(cap, base * 2 ** (attempt - 1))`, computed without overflow for any attempt number."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    # Compare exponents instead of computing 2 ** huge: once past log2(cap / base) the cap rules.
    if attempt - 1 >= math.log2(cap / base):
        return cap
    return min(cap, base * 2.0 ** (attempt - 1))


def compute_backoff(attempt: int, *, base: float, cap: float, rng: Random) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, ceiling), so concurrent retries spread out."""
    return rng.random() * backoff_ceiling(attempt, base=base, cap=cap)


def is_safe_request(method: str, path: str) -> bool:
    """GET (and friends) and the read-only searches: repeating them changes nothing on the server."""
    return method.upper() in SAFE_METHODS or (method.upper() == "POST" and path in READ_ONLY_POSTS)


def is_retryable_status(status: int) -> bool:
    """408, 429, 500, 502, 503 and 504: worth asking again; other 4xx/5xx (501, 505...) will answer the same."""
    return status in RETRYABLE_STATUSES
