"""The soak's checks can fail: each one on a small made-up record that breaks its property."""

from __future__ import annotations

from typing import Any

from tests.soak.checks import (
    GRADE_FIELDS,
    busiest,
    by_client_name,
    differences,
    key_problems,
    retry_after_violations,
    sis_problems,
    unprocessed,
)


def line(time: float, status: int = 200, retry_after: str | None = None, name: str = "a") -> dict[str, Any]:
    """A journal line arriving at `time`, answered at once."""
    return {
        "time": time,
        "answered": time + 0.001,
        "status": status,
        "retryAfter": retry_after,
        "path": "/v1/flow/1",
        "headers": {"X-Client-Name": name},
    }


def test_a_request_inside_a_retry_after_is_a_violation() -> None:
    """After a 429 with Retry-After 2 a request 1 s later is inside it; one 2 s later or in flight is not."""
    journal = [line(10.0, 429, "2"), line(10.1), line(11.0), line(12.001)]
    [violation] = retry_after_violations(journal)
    assert (violation.arrived, violation.status) == (11.0, 429)
    assert retry_after_violations([line(10.0, 503, "2"), line(10.1), line(12.001)]) == []
    assert retry_after_violations([line(10.0, 503), line(10.5)]) == []  # no Retry-After, no pause


def test_the_busiest_window_counts_per_client_name() -> None:
    """Three arrivals inside one second of one process count 3; the other process's do not add to it."""
    journal = [line(0.0), line(0.5), line(0.99), line(1.0, name="b"), line(1.5)]
    groups = by_client_name(journal)
    assert (busiest(groups["a"], 1.0), busiest(groups["b"], 1.0)) == (3, 1)


def test_a_key_reused_for_another_record_and_a_record_under_two_keys_are_found() -> None:
    """Key k1 carries two grades; the grade 7 went out under k2 and k3."""
    deliveries = [
        sis(1, 2, "12", "k1"),
        sis(1, 2, "10", "k1"),
        sis(1, 3, "7", "k2"),
        sis(1, 3, "7", "k3"),
        sis(1, 4, "4", "k4"),
        sis(1, 4, "4", "k4"),  # the same key again: a repeat the SIS drops, not a problem
    ]
    reused, split = key_problems(deliveries)
    assert (len(reused), len(split)) == (1, 1)


def test_a_missing_or_older_last_delivery_and_a_mirror_difference_are_found() -> None:
    """The truth 10 was never sent for one participant; an older grade came last for another."""
    truth = {(1, 2): ("10", "10", 5), (1, 3): ("7", "7", 6), (1, 4): (None, None, None)}
    deliveries = [sis(1, 2, "12", "k1", 4), sis(1, 3, "7", "k2", 6), sis(1, 3, "4", "k3", 3)]
    assert len(sis_problems(truth, deliveries)) == 2
    assert sis_problems(truth, [sis(1, 2, "10", "k1", 5), sis(1, 3, "7", "k2", 6)]) == []
    assert differences(truth, {**truth, (1, 2): ("12", "12", 4)}) == [
        "(1, 2): truth ('10', '10', 5) mirror ('12', '12', 4)"
    ]


def test_an_acknowledged_webhook_not_done_is_found() -> None:
    """Sequences answered 200 must be done in the inbox."""
    assert unprocessed([1, 2, 3], {1: "done", 2: "dead"}) == ["sequence 2: dead", "sequence 3: missing"]


def sis(flow: int, participant: int, grade: str, key: str, date: int = 1) -> dict[str, Any]:
    """One SIS delivery."""
    values = (flow, participant, grade, grade, date)
    return {"idempotencyKey": key, **dict(zip(GRADE_FIELDS, values, strict=True))}
