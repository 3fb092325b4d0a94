"""The filters of `POST /flows/search` and `POST /participation-events`, parsed strictly from their bodies.

A bad type or value raises `ApiProblem(400)` naming the field, as WISEflow answers invalid search data.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

from service.simulator.http import ApiProblem, field_int, field_object, field_strings
from service.simulator.world import PURPOSES, STATE_NAMES, Json, World

COMPARATORS: Final[dict[str, Callable[[int, int], bool]]] = {
    "GREATER": operator.gt,
    "GREATER_EQUAL": operator.ge,
    "LESS": operator.lt,
    "LESS_EQUAL": operator.le,
    "EQUAL": operator.eq,
}
EVENT_TYPES: Final = (
    "FACIAL_RECOGNITION",
    "INDIVIDUAL_DEADLINE",
    "PARTICIPANT_PRESENCE",
    "CHARACTERS_TYPED",
    "PAPER_HANDED_IN",
    "PAPER_SAVED",
    "PAPER_WITHDRAWN",
    "FLOW_OPENED",
    "FEEDBACK_ACCESSED",
    "ASSIGNMENT_ACCESSED",
    "PROGRESS",
    "HEARTBEAT",
    "DEVICE_MONITOR_HEARTBEAT",
    "DEVICE_MONITOR_SCREENSHOT",
    "DEVICE_MONITOR_SESSION",
    "VOICE_DETECTION",
    "LOG",
)
FlowTest = Callable[[Json], bool]


def _text(obj: Json, name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiProblem(400, f"{where}{name} must be a string", "invalid_field")
    return value


def _range_test(obj: Json, key: str, where: str) -> list[FlowTest]:
    """`{from, to}` on `createdAt`, inclusive."""
    rng = field_object(obj, key, where=where)
    low = field_int(rng, "from", where=f"{where}{key}.")
    high = field_int(rng, "to", where=f"{where}{key}.")
    tests: list[FlowTest] = []
    if low is not None:
        tests.append(lambda r: bool(r["createdAt"] >= low))
    if high is not None:
        tests.append(lambda r: bool(r["createdAt"] <= high))
    return tests


def _date_tests(dates: Json) -> list[FlowTest]:
    """`dates.participation` / `dates.marking`: `start`/`end` with a comparator each."""
    tests: list[FlowTest] = []
    for period in ("participation", "marking"):
        spec = field_object(dates, period, where="dates.")
        for edge in ("start", "end"):
            value = field_int(spec, edge, where=f"dates.{period}.")
            if value is None:
                continue
            name = spec.get(f"{edge}Comparator", "EQUAL")
            if name not in COMPARATORS:
                raise ApiProblem(
                    400, f"dates.{period}.{edge}Comparator must be one of {', '.join(COMPARATORS)}"
                )
            tests.append(_compare(period, edge, COMPARATORS[name], value))
    return tests


def _compare(period: str, edge: str, compare: Callable[[int, int], bool], value: int) -> FlowTest:
    """A test of one date of a search record against a value."""

    def test(record: Json) -> bool:
        return compare(record[period][edge], value)

    return test


def _contains(key: str, needle: str) -> FlowTest:
    """A case-insensitive partial match on a text field, as WISEflow searches titles."""

    def test(record: Json) -> bool:
        return needle in str(record[key]).lower()

    return test


def flow_filter(body: Json) -> FlowTest:
    """A predicate over search records for a flows-search-request body."""
    meta = field_object(body, "metadata")
    tests: list[FlowTest] = []
    states = field_strings(meta, "states", STATE_NAMES, where="metadata.")
    if states is not None:
        wanted_states = set(states)
        tests.append(lambda r: r["state"] in wanted_states)
    purposes = field_strings(meta, "purposes", PURPOSES, where="metadata.")
    if purposes is not None:
        wanted_purposes = set(purposes)
        tests.append(lambda r: r["purpose"] in wanted_purposes)
    for name, key in (("title", "title"), ("subtitle", "subtitle")):
        text = _text(meta, name, "metadata.")
        if text:
            tests.append(_contains(key, text.lower()))
    tests.extend(_range_test(meta, "createdAt", "metadata."))
    tests.extend(_date_tests(field_object(body, "dates")))
    return lambda record: all(test(record) for test in tests)


def search_flows(world: World, body: Json) -> list[Json]:
    """Every search record matching `body`, in flow-id order."""
    test = flow_filter(body)
    records = (world.search_record(fid) for fid in world.flows)
    return [r for r in records if test(r)]


def event_filter(body: Json) -> Callable[[Json], bool]:
    """A predicate over participation events for an events-request body."""
    flow_id = field_int(body, "flowId")
    user_id = field_int(body, "userId")
    types = field_strings(body, "types", EVENT_TYPES)
    window = body.get("timestamp")
    low = high = None
    if window is not None:
        if not isinstance(window, dict) or "from" not in window or "to" not in window:
            raise ApiProblem(400, "timestamp must have both from and to", "invalid_field")
        low = field_int(window, "from", where="timestamp.")
        high = field_int(window, "to", where="timestamp.")
        if low is None or high is None or low > high:
            raise ApiProblem(
                400, "timestamp.from and timestamp.to must be integers, from <= to", "invalid_field"
            )

    def test(event: Json) -> bool:
        return (
            (flow_id is None or event["flowId"] == flow_id)
            and (user_id is None or event["userId"] == user_id)
            and (types is None or event["type"] in types)
            and (low is None or high is None or low <= event["timestamp"] <= high)
        )

    return test
