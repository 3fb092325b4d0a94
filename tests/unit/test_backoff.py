"""Backoff with full jitter and the retry classification: pure, seeded, no sleeping."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.backoff import (
    Backoff,
    RetryPolicy,
    backoff_ceiling,
    compute_backoff,
    is_retryable_status,
    is_safe_request,
)
from service.settings import Settings
from service.sync.inbox_worker import WorkerPolicy
from service.sync.outbox import DeliveryPolicy

bases = st.floats(min_value=1e-6, max_value=100.0, allow_nan=False)
caps = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)


@given(attempt=st.integers(min_value=1, max_value=10**9), base=bases, cap=caps, seed=st.integers())
def test_backoff_is_never_negative_and_never_above_its_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    """Whatever the attempt number (huge ones included), 0 <= delay <= cap."""
    delay = compute_backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= cap


@given(attempt=st.integers(min_value=1, max_value=60), base=bases)
def test_ceiling_doubles_until_the_cap(attempt: int, base: float) -> None:
    """The ceiling is base * 2**(attempt-1) below the cap, and the cap above it."""
    cap = 30.0
    expected = min(cap, base * 2.0 ** (attempt - 1))
    assert expected == pytest.approx(backoff_ceiling(attempt, base=base, cap=cap))


def test_overflowing_attempt_numbers_give_the_cap() -> None:
    """2 ** 100000 would overflow a float; the ceiling is simply the cap."""
    assert backoff_ceiling(100_000, base=0.5, cap=30.0) == 30.0


def test_first_attempts_follow_the_defaults() -> None:
    """Defaults 0.5 s base and 30 s cap: 0.5, 1, 2, 4 ... then 30."""
    assert [backoff_ceiling(n, base=0.5, cap=30.0) for n in range(1, 8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
    ]


def test_jitter_spreads_the_delays() -> None:
    """Full jitter: many draws of the same attempt are not all equal and cover the range."""
    rng = random.Random(7)
    delays = [compute_backoff(4, base=0.5, cap=30.0, rng=rng) for _ in range(200)]
    assert min(delays) < 1.0
    assert max(delays) > 3.0


def test_attempt_zero_is_rejected() -> None:
    """Attempt numbers start at 1."""
    with pytest.raises(ValueError, match="start at 1"):
        backoff_ceiling(0, base=0.5, cap=30.0)


def test_policy_from_settings() -> None:
    """The retry policy reads SYNC_RETRY_* and the call deadline from the settings."""
    policy = RetryPolicy.from_settings(
        Settings(retry_attempts=3, retry_base=1.0, retry_cap=8.0, call_deadline=9)
    )
    expected = RetryPolicy(attempts=3, backoff=Backoff(base=1.0, cap=8.0), deadline=9, retry_after_max=60.0)
    assert expected == policy


def test_invalid_backoff_is_rejected() -> None:
    """A cap below the base, or a floor above the cap, cannot be a backoff."""
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(base=2.0, cap=1.0)
    with pytest.raises(ValueError, match="floor <= cap"):
        Backoff(base=1.0, cap=2.0, floor=3.0)


def test_the_policies_keep_their_defaults() -> None:
    """One backoff type, the three policies' old numbers: client 0.5-30 s, worker 2-900 s, deliverer 1-300 s
    floored at 1 s."""
    assert RetryPolicy().backoff == Backoff(base=0.5, cap=30.0, floor=0.0)
    assert WorkerPolicy().backoff == Backoff(base=2.0, cap=900.0, floor=0.0)
    assert DeliveryPolicy().backoff == Backoff(base=1.0, cap=300.0, floor=1.0)


@given(
    attempt=st.integers(min_value=1, max_value=10**9),
    base=bases,
    cap=caps,
    floor_share=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(),
)
def test_a_backoffs_delay_stays_between_its_floor_and_its_cap(
    attempt: int, base: float, cap: float, floor_share: float, seed: int
) -> None:
    """Whatever the attempt, floor <= delay <= cap; without a floor it is exactly the full-jitter draw."""
    cap = max(cap, base)
    backoff = Backoff(base=base, cap=cap, floor=cap * floor_share)
    delay = backoff.delay(attempt, random.Random(seed))
    assert backoff.floor <= delay <= cap
    unfloored = Backoff(base=base, cap=cap).delay(attempt, random.Random(seed))
    assert compute_backoff(attempt, base=base, cap=cap, rng=random.Random(seed)) == unfloored
    assert max(backoff.floor, unfloored) == delay


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/flow/1", True),
        ("get", "/license/info", True),
        ("POST", "/flows/search", True),
        ("POST", "/participation-events", True),
        ("POST", "/webhooks", False),
        ("PUT", "/webhooks/3", False),
        ("DELETE", "/webhooks/3", False),
        ("POST", "/oauth2/token", False),
    ],
)
def test_only_safe_requests_are_retried(method: str, path: str, expected: bool) -> None:
    """GET and the two read-only searches are safe; every write is not."""
    assert expected == is_safe_request(method, path)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (501, False), (404, False)],
)
def test_retryable_statuses(status: int, expected: bool) -> None:
    """408, 429, 500, 502, 503 and 504 are worth another attempt; 501 and other 4xx are not."""
    assert expected == is_retryable_status(status)
