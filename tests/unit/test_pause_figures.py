"""certify's Retry-After figures from journalled requests: answers seen, and how many were waited out."""

from __future__ import annotations

import pytest

from service.core.pause_figures import Exchange, PauseFigures, pause_figures


def test_nothing_journalled_measures_nothing() -> None:
    """No requests: no answers, none honoured, no wait after a 429."""
    assert pause_figures([]) == PauseFigures(0, 0, None)


def test_the_next_request_after_the_wait_honours_it() -> None:
    """A 429 read at 10.5 asking 2 s; the next request left at 12.5: honoured, and the wait was 2 s."""
    exchanges = [Exchange(10.0, 500, 429, 2.0), Exchange(12.5, 10, 200)]
    assert pause_figures(exchanges) == PauseFigures(1, 1, 2.0)


def test_a_request_inside_the_wait_breaks_it() -> None:
    """The next request left 0.1 s before the Retry-After ended: seen, not honoured."""
    exchanges = [Exchange(10.0, 500, 429, 2.0), Exchange(12.4, 10, 200), Exchange(20.0, 10, 200)]
    figures = pause_figures(exchanges)
    assert (figures.retry_after_answers, figures.retry_after_honoured) == (1, 0)
    assert figures.shortest_wait_after_429 == pytest.approx(1.9)


def test_requests_already_in_flight_when_the_answer_was_read_do_not_count() -> None:
    """Sent before the 429 was read (concurrent requests), they could not have waited; the next one did."""
    exchanges = [
        Exchange(10.0, 500, 429, 2.0),
        Exchange(10.2, 400, 200),  # left before 10.5, when the 429 was read
        Exchange(12.5, 10, 200),
    ]
    assert pause_figures(exchanges) == PauseFigures(1, 1, 2.0)


def test_a_503_with_retry_after_counts_and_other_statuses_do_not() -> None:
    """A maintenance 503's Retry-After is counted; a 200 or a 500 carrying one is not a Retry-After answer."""
    exchanges = [
        Exchange(1.0, 0, 200, 5.0),
        Exchange(2.0, 0, 500, 5.0),
        Exchange(3.0, 0, 503, 3.0),
        Exchange(5.0, 0, 200),
        Exchange(9.0, 0, 503),  # no Retry-After: nothing to honour
        Exchange(9.1, 0, 200),
    ]
    figures = pause_figures(exchanges)
    assert (figures.retry_after_answers, figures.retry_after_honoured) == (1, 0)
    assert figures.shortest_wait_after_429 is None


def test_the_last_answer_with_nothing_after_it_was_honoured() -> None:
    """Nothing was sent inside the wait when nothing was sent at all; no wait after it to measure."""
    assert pause_figures([Exchange(1.0, 100, 429, 30.0)]) == PauseFigures(1, 1, None)


def test_a_millisecond_of_clock_rounding_is_not_a_broken_wait() -> None:
    """Sent 0.5 ms before the end (rounding between the two clocks): honoured; 5 ms before: not."""
    on_time = [Exchange(0.0, 1000, 429, 1.0), Exchange(1.9995, 0, 200)]
    early = [Exchange(0.0, 1000, 429, 1.0), Exchange(1.995, 0, 200)]
    assert pause_figures(on_time).retry_after_honoured == 1
    assert pause_figures(early).retry_after_honoured == 0
