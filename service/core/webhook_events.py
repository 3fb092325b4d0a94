"""Webhook events: strict parsing of a verified body, and what each event asks the service to refresh.

The body (docs/wiseflow.md, ASSUMED): ``{"id": "<delivery uuid>", "sequence": <int>, "event": "<EVENT>",
"timestamp": <unix s>, "data": {"flowId": <int>, "participantId": <int>}}``. Parsing never trusts a field's
type: anything off raises `MalformedEvent(reason)` with a short label the HTTP edge answers 400 with.
An event type we do not know is still a valid event (``known`` is False): it is stored and reported.

Events never carry data that is applied directly: each only names what to fetch again from the API
(`refresh_for`), so an old or out-of-order event can never overwrite newer state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

import orjson

from service.core.ports import WEBHOOK_EVENTS

# SQLite's INTEGER is a signed 64-bit value: a sequence or id beyond it could not be stored.
_MAX_INT: Final = 2**63 - 1
_MIN_INT: Final = -(2**63)
_MAX_TEXT: Final = 200


class MalformedEvent(ValueError):
    """A verified body that is not a well-formed event; ``reason`` is safe to log and answer with."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed webhook event: {reason}")


class Refresh(enum.Enum):
    """What an event asks to fetch again."""

    ASSESSMENTS = "assessments"  # the flow's grades (and so, through the store, the outbox)
    FLOW = "flow"  # the flow itself (state, dates) and its polling plan
    PARTICIPANTS = "participants"  # the flow's participants (submissions, assignments)


_REFRESH: Final[dict[str, Refresh]] = {
    "FINAL_GRADE": Refresh.ASSESSMENTS,
    "ASSESSMENT": Refresh.ASSESSMENTS,
    "ALTERNATIVE_GRADE": Refresh.ASSESSMENTS,
    "FLOW_STATE_UPDATED": Refresh.FLOW,
    "FLOW_PERIOD_UPDATED": Refresh.FLOW,
    "FLOW_EXTERNAL_SOURCE": Refresh.FLOW,
    "PAPER_SUBMITTED": Refresh.PARTICIPANTS,
    "ASSIGNMENT": Refresh.PARTICIPANTS,
}
assert set(_REFRESH) == set(WEBHOOK_EVENTS)  # noqa: S101 - a new event type must be mapped on purpose


def events_for(kind: Refresh) -> tuple[str, ...]:
    """The event types that ask for `kind`."""
    return tuple(event for event, k in _REFRESH.items() if k is kind)


# What an event type asks to refresh, `refresh_for(event)`; None for an event type this service does not know.
refresh_for: Final = _REFRESH.get


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One parsed event. ``delivery_id`` is this delivery's id; ``sequence`` identifies the event itself."""

    delivery_id: str
    sequence: int
    event: str
    timestamp: int
    flow_id: int | None
    participant_id: int | None

    @property
    def known(self) -> bool:
        """True when this service knows what to do with the event type."""
        return self.event in _REFRESH


def parse_event(
    body: bytes, fallback_delivery_id: str | None = None, fallback_timestamp: int | None = None
) -> WebhookEvent:
    """Parse a verified body strictly.

    Under Standard Webhooks the signed headers already carry the message id and timestamp: they stand in
    (`fallback_delivery_id`, `fallback_timestamp`) when the body has no ``id`` or ``timestamp`` of its own.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedEvent("bad_json") from None
    if not isinstance(doc, dict):
        raise MalformedEvent("not_an_object")
    event = _text(doc, "event")
    raw_id = doc.get("id", fallback_delivery_id)
    delivery_id = _text({"id": raw_id}, "id")
    data = doc.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedEvent("bad_data")
    flow_id = _optional_int(data, "flowId")
    if flow_id is None and event in _REFRESH:
        # Every known event concerns one flow: without its id there is nothing to refresh.
        raise MalformedEvent("missing_flowId")
    return WebhookEvent(
        delivery_id=delivery_id,
        sequence=_required_int(doc, "sequence"),
        event=event,
        timestamp=_timestamp(doc, fallback_timestamp),
        flow_id=flow_id,
        participant_id=_optional_int(data, "participantId"),
    )


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise MalformedEvent(f"missing_{name}")
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT or not value.isprintable():
        raise MalformedEvent(f"bad_{name}")
    return value


def _required_int(doc: dict[str, Any], name: str) -> int:
    value = _optional_int(doc, name)
    if value is None:
        raise MalformedEvent(f"missing_{name}")
    return value


def _optional_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    # bool is an int in Python, and 1.0 is not an id: only true JSON integers in SQLite's range pass.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise MalformedEvent(f"bad_{name}")
    return value


def _timestamp(doc: dict[str, Any], fallback: int | None) -> int:
    raw = doc.get("timestamp")
    if raw is None and fallback is not None:
        return fallback
    if raw is None:
        raise MalformedEvent("missing_timestamp")
    # The body's timestamp is a JSON integer (docs/wiseflow.md): a string, float or bool is a malformed
    # field, even when its digits would parse (only the Standard Webhooks header carries it as text). An
    # integer is a time, however far off: the replay window judges it (401), as long as SQLite can hold it.
    if isinstance(raw, bool) or not isinstance(raw, int) or not _MIN_INT <= raw <= _MAX_INT:
        raise MalformedEvent("bad_timestamp")
    return raw
