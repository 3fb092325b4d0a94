"""Domain records: parsing WISEflow JSON, grade versions and their idempotency keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.records import IDEMPOTENCY_PREFIX, Flow, GradeVersion, Participant, changed_grades

grades = st.one_of(st.none(), st.text(max_size=8))
ids = st.integers(min_value=1, max_value=10**9)
dates = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))


def test_flow_from_search_reads_named_state_and_ranges() -> None:
    """A search item gives state, title and both date ranges."""
    item = {
        "flowId": 7,
        "title": "Exam",
        "state": "PARTICIPATION_STARTED",
        "createdAt": 10,
        "participation": {"start": 100, "end": 200},
        "marking": {"start": 300, "end": 400},
    }
    assert Flow.from_search(item) == Flow(7, "PARTICIPATION_STARTED", "Exam", 10, 100, 200, 300, 400)


def test_flow_from_basic_maps_numeric_states() -> None:
    """`GET /flow/{id}` numbers its states; 1 is ACTIVATED as search names it."""
    item = {"id": 3, "state": 1, "participantStartDate": 5, "participantEndDate": 6}
    flow = Flow.from_basic(item)
    assert (flow.flow_id, flow.state, flow.participation_start, flow.participation_end) == (
        3,
        "ACTIVATED",
        5,
        6,
    )


def test_participant_keeps_ids_and_drops_personal_data() -> None:
    """Names and e-mail in `user` never reach the record."""
    item = {
        "participantId": 9,
        "user": {"id": 44, "firstName": "Ada", "email": "ada@example.org"},
        "number": 2,
        "activated": True,
    }
    participant = Participant.from_api(1, item)
    assert participant == Participant(1, 9, user_id=44, number=2, activated=True)
    assert "Ada" not in repr(participant)


def test_empty_grade_strings_mean_no_grade() -> None:
    """WISEflow's "" and null both parse as no grade, and such a version is not graded."""
    version = GradeVersion.from_assessment(1, {"id": None, "participantId": 2, "grade": "", "adminGrade": None})
    assert (version.grade, version.admin_grade, version.is_graded) == (None, None, False)


def test_payload_has_the_sink_fields() -> None:
    """The SIS body is exactly flowId, participantId, grade, adminGrade, date."""
    version = GradeVersion(1, 2, "B", None, 99, admin_grade_date=5, export_state=2)
    assert version.payload() == {"flowId": 1, "participantId": 2, "grade": "B", "adminGrade": None, "date": 99}


def test_key_ignores_fields_outside_the_version() -> None:
    """Export state and admin grade date do not make a new version."""
    a = GradeVersion(1, 2, "B", "7", 99, admin_grade_date=1, export_state=0)
    b = GradeVersion(1, 2, "B", "7", 99, admin_grade_date=2, export_state=2)
    assert a.idempotency_key == b.idempotency_key


@given(ids, ids, grades, grades, dates)
def test_key_is_stable_and_prefixed(
    flow: int, participant: int, grade: str | None, admin: str | None, date: int | None
) -> None:
    """The same version always gives the same prefixed sha256 hex key."""
    key = GradeVersion(flow, participant, grade, admin, date).idempotency_key
    assert key == GradeVersion(flow, participant, grade, admin, date).idempotency_key
    assert key.startswith(IDEMPOTENCY_PREFIX)
    assert len(key) == len(IDEMPOTENCY_PREFIX) + 64


@given(ids, ids, grades, grades, dates, grades, grades, dates)
def test_different_versions_have_different_keys(
    flow: int,
    participant: int,
    g1: str | None,
    a1: str | None,
    d1: int | None,
    g2: str | None,
    a2: str | None,
    d2: int | None,
) -> None:
    """Any change of grade, admin grade or date changes the key (no ':' or null collisions)."""
    one = GradeVersion(flow, participant, g1, a1, d1)
    two = GradeVersion(flow, participant, g2, a2, d2)
    assert ((g1, a1, d1) == (g2, a2, d2)) == (one.idempotency_key == two.idempotency_key)


def test_colon_in_a_grade_does_not_collide() -> None:
    """ "a:b" + "c" and "a" + "b:c" are different versions."""
    assert (
        GradeVersion(1, 2, "a:b", "c", 3).idempotency_key != GradeVersion(1, 2, "a", "b:c", 3).idempotency_key
    )


def test_changed_grades_returns_new_and_changed_only() -> None:
    """Unchanged versions are skipped; a new participant and a changed grade are returned."""
    same = GradeVersion(1, 1, "A", None, 10)
    changed = GradeVersion(1, 2, "B", None, 11)
    new = GradeVersion(1, 3, "C", None, 12)
    stored = {1: same.idempotency_key, 2: GradeVersion(1, 2, "C", None, 10).idempotency_key}
    assert changed_grades(stored, [same, changed, new]) == [changed, new]
