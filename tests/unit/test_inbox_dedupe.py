"""When a webhook delivery is a duplicate (`core.inbox_dedupe.judge`): pure, times as parameters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.inbox_dedupe import REDELIVERY_WINDOW, Arrival, Identity, Stored, judge

GRADE: Identity = (5, "FINAL_GRADE", 1, 7)


def test_the_same_event_within_the_window_is_a_duplicate_of_the_stored_copy() -> None:
    """A redelivery keeps the stored event's id; nothing new is written."""
    (verdict,) = judge([Stored(3, GRADE, 100.0)], [(GRADE, 100.0 + REDELIVERY_WINDOW - 1)], next_id=4)
    assert (verdict.arrival, verdict.event_id, verdict.stored) == (Arrival.DUPLICATE, 3, False)


def test_a_different_event_under_a_stored_sequence_is_reused_and_new() -> None:
    """Another flow, kind or participant under sequence 5 is stored with the next id, and reported."""
    others: list[Identity] = [
        (5, "FLOW_STATE_UPDATED", 2, None),
        (5, "FINAL_GRADE", 1, 8),
        (5, "ASSESSMENT", 1, 7),
    ]
    verdicts = judge([Stored(3, GRADE, 100.0)], [(o, 101.0) for o in others], next_id=4)
    assert [(v.arrival, v.event_id) for v in verdicts] == [
        (Arrival.REUSED, 4),
        (Arrival.REUSED, 5),
        (Arrival.REUSED, 6),
    ]


def test_the_same_event_after_the_window_is_new_and_later_copies_follow_it() -> None:
    """Past any redelivery the same identity is a new event; a copy right after it is its duplicate."""
    later = 100.0 + REDELIVERY_WINDOW
    verdicts = judge([Stored(3, GRADE, 100.0)], [(GRADE, later), (GRADE, later + 1)], next_id=9)
    assert [(v.arrival, v.event_id) for v in verdicts] == [(Arrival.REUSED, 9), (Arrival.DUPLICATE, 9)]


def test_copies_inside_one_batch_are_one_event() -> None:
    """Two deliveries of a new event in the same group commit: the second is a duplicate of the first."""
    verdicts = judge([], [(GRADE, 1.0), (GRADE, 1.0), ((6, "FINAL_GRADE", 1, 7), 1.0)], next_id=1)
    assert [(v.arrival, v.event_id) for v in verdicts] == [
        (Arrival.NEW, 1),
        (Arrival.DUPLICATE, 1),
        (Arrival.NEW, 2),
    ]


identities = st.tuples(
    st.integers(0, 3),
    st.sampled_from(["FINAL_GRADE", "FLOW_STATE_UPDATED"]),
    st.integers(1, 2),
    st.none() | st.integers(7, 8),
)


@given(st.lists(st.tuples(identities, st.floats(0, 4 * REDELIVERY_WINDOW)), max_size=30))
def test_no_delivery_is_taken_for_another_event(arrivals: list[tuple[Identity, float]]) -> None:
    """Whatever arrives, a duplicate always points at an event of its own identity, received within the
    window; every new event gets a fresh id."""
    arrivals.sort(key=lambda a: a[1])
    verdicts = judge([], arrivals, next_id=1)
    events: dict[int, tuple[Identity, float]] = {}
    for (identity, at), verdict in zip(arrivals, verdicts, strict=True):
        if verdict.stored:
            assert verdict.event_id not in events
            events[verdict.event_id] = (identity, at)
        else:
            stored_identity, stored_at = events[verdict.event_id]
            assert stored_identity == identity
            assert at - stored_at < REDELIVERY_WINDOW


@given(st.lists(st.tuples(identities, st.floats(0, 4 * REDELIVERY_WINDOW)), max_size=30), st.integers(1, 99))
def test_a_batch_of_distinct_sequences_none_stored_is_all_new_in_order(
    arrivals: list[tuple[Identity, float]], next_id: int
) -> None:
    """What the group commit's shortcut relies on: when no stored event shares a sequence with the batch and
    no two of its events share one, every event is new and they take the next ids in order."""
    distinct = list({identity[0]: (identity, at) for identity, at in arrivals}.values())
    verdicts = judge([], distinct, next_id=next_id)
    assert [(v.arrival, v.event_id) for v in verdicts] == [
        (Arrival.NEW, next_id + n) for n in range(len(distinct))
    ]
