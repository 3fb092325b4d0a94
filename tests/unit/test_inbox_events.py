"""Parsing verified webhook bodies strictly, and what each event type refreshes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.ports import WEBHOOK_EVENTS
from service.core.webhook_events import (
    MalformedEvent,
    Refresh,
    WebhookEvent,
    events_for,
    parse_event,
    refresh_for,
)
from service.core.webhook_figures import WebhookFigures

GOOD = {"id": "d-1", "sequence": 12, "event": "FINAL_GRADE", "timestamp": 1_700_000_000, "data": {"flowId": 3}}


def _reason(body: bytes) -> str:
    with pytest.raises(MalformedEvent) as info:
        parse_event(body)
    return info.value.reason


def test_a_good_body_parses() -> None:
    """Every field of a well-formed body is read with its type."""
    event = parse_event(orjson.dumps({**GOOD, "data": {"flowId": 3, "participantId": 4}}))
    assert event == WebhookEvent("d-1", 12, "FINAL_GRADE", 1_700_000_000, 3, 4)
    assert event.known


def test_the_header_id_stands_in_for_a_missing_body_id() -> None:
    """Standard Webhooks: without a body id, the verified webhook-id is the delivery id."""
    body = {k: v for k, v in GOOD.items() if k != "id"}
    assert parse_event(orjson.dumps(body), fallback_delivery_id="msg_1").delivery_id == "msg_1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sequence": None}, "missing_sequence"),
        ({"sequence": -1}, "bad_sequence"),
        ({"sequence": 2**63}, "bad_sequence"),
        ({"sequence": 1.0}, "bad_sequence"),
        ({"sequence": False}, "bad_sequence"),
        ({"event": ""}, "bad_event"),
        ({"event": 5}, "bad_event"),
        ({"event": "A\nB"}, "bad_event"),
        ({"id": None}, "missing_id"),
        ({"id": "x" * 201}, "bad_id"),
        ({"timestamp": None}, "missing_timestamp"),
        ({"timestamp": "1700000000.5"}, "bad_timestamp"),
        ({"timestamp": "1700000000"}, "bad_timestamp"),
        ({"timestamp": 1700000000.0}, "bad_timestamp"),
        ({"timestamp": True}, "bad_timestamp"),
        ({"timestamp": 2**64 - 1}, "bad_timestamp"),
        ({"timestamp": 1e23}, "bad_timestamp"),  # what orjson makes of a 23-digit integer
        ({"data": [1]}, "bad_data"),
        ({"data": {"flowId": "3"}}, "bad_flowId"),
        ({"data": {}}, "missing_flowId"),
        ({"data": {"flowId": 3, "participantId": 1.5}}, "bad_participantId"),
    ],
)
def test_malformed_fields_name_their_reason(change: dict[str, object], reason: str) -> None:
    """Each wrong or missing field is refused with a reason naming it."""
    assert _reason(orjson.dumps({**GOOD, **change})) == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[" * 5000, "bad_json"),
        (b"NaN", "bad_json"),
        (b"3", "not_an_object"),
    ],
)
def test_non_objects_are_refused(body: bytes, reason: str) -> None:
    """Invalid JSON (empty, bad UTF-8, too deep, NaN) and non-objects are refused, never crash."""
    assert _reason(body) == reason


def test_an_unknown_event_needs_no_flow() -> None:
    """An event type we do not know parses without a flow id and is not `known`."""
    event = parse_event(orjson.dumps({**GOOD, "event": "NEW_THING", "data": None}))
    assert (event.known, event.flow_id) == (False, None)


def test_every_wiseflow_event_type_has_a_refresh() -> None:
    """Each event of WISEflow's enum maps to a refresh, and events_for inverts the map."""
    assert all(refresh_for(e) is not None for e in WEBHOOK_EVENTS)
    assert set(events_for(Refresh.ASSESSMENTS)) == {"FINAL_GRADE", "ASSESSMENT", "ALTERNATIVE_GRADE"}
    assert refresh_for("FLOW_STATE_UPDATED") is Refresh.FLOW
    assert refresh_for("PAPER_SUBMITTED") is Refresh.PARTICIPANTS


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_malformed(body: bytes) -> None:
    """Whatever the bytes, parsing yields an event or MalformedEvent, nothing else."""
    try:
        parse_event(body)
    except MalformedEvent as exc:
        assert exc.reason  # noqa: PT017 - the only allowed failure, and it carries a reason


def test_figures_snapshot() -> None:
    """Figures count rejections by reason and average the processing lag."""
    figures = WebhookFigures()
    figures.reject("bad_signature")
    figures.reject("bad_signature")
    figures.record_lag(1.0)
    figures.record_lag(3.0)
    snap = figures.snapshot()
    assert (snap["rejected"], snap["rejected_total"], snap["lag_mean_seconds"], snap["lag_max_seconds"]) == (
        {"bad_signature": 2},
        2,
        2.0,
        3.0,
    )


def test_signed_header_timestamp_stands_in_for_a_missing_body_timestamp() -> None:
    """Standard Webhooks: without a body timestamp the verified header's is used; a body one wins."""
    without = {k: v for k, v in GOOD.items() if k != "timestamp"}
    assert parse_event(orjson.dumps(without), fallback_timestamp=1_600_000_000).timestamp == 1_600_000_000
    assert parse_event(orjson.dumps(GOOD), fallback_timestamp=1_600_000_000).timestamp == 1_700_000_000
    assert _reason(orjson.dumps(without)) == "missing_timestamp"
