"""The endpoint registry (what `certify` lists, `spec diff` judges by): real, and exactly what is used."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from service.adapters.wiseflow import api
from service.adapters.wiseflow.endpoints import ENDPOINTS, HANDLED_EVENTS, Endpoint
from service.adapters.wiseflow.records import route_of
from service.core.records import Flow
from service.spec import __path__ as spec_dir
from service.spec.document import navigable, snapshot
from service.spec.surface import flatten, key_of, operations
from tests.contract.examples import answer_examples
from tests.contract.parsers import OUR_TITLE, OUR_URL, PARSERS, record

_CALL = re.compile(r'"(GET|POST|PUT|DELETE)",\s*f?"(/[^"]+)"')
_FORMATTED = re.compile(r"\{[^}]*\}")  # an f-string's {int(flow_id)}: any id


def test_every_endpoint_the_client_calls_is_registered() -> None:
    """Each method/path literal of the client's endpoint methods is an entry of the registry."""
    calls = _CALL.findall(inspect.getsource(api))
    called = {f"{method} {route_of(_FORMATTED.sub('0', path))}" for method, path in calls}
    registered = {f"{e.method} {e.route}" for e in ENDPOINTS}
    assert called - {"POST /oauth2/token"}
    assert called <= registered


def test_every_registered_endpoint_is_in_wiseflows_openapi() -> None:
    """No entry names an endpoint WISEflow does not document (version 1.34.0)."""
    with open(f"{spec_dir[0]}/openapi-1.34.0.json", "rb") as spec:
        paths = orjson.loads(spec.read())["paths"]
    missing = [(e.method, e.path) for e in ENDPOINTS if e.method.lower() not in paths.get(e.path, {})]
    assert missing == []


def test_route_of_a_template_matches_route_of_a_request() -> None:
    """`/flow/{flowId}/assessments` and `/flow/12/assessments` group under the same route."""
    assert Endpoint("GET", "/flow/{flowId}/assessments", "", ()).route == route_of("/flow/12/assessments")


# The envelope's own parts, read from every answer to tell a failure or find the records: not fields
# whose loss or change of type a release could break the service with.
ENVELOPE = {"success", "error", "pagination"}


class Recording(dict[str, Any]):
    """A JSON object that notes the path of every key read from it, and from the objects inside it."""

    def __init__(self, value: dict[str, Any], path: str, seen: set[str]) -> None:
        super().__init__({k: _recording(v, _join(path, k), seen) for k, v in value.items()})
        self.path, self.seen = path, seen

    def __getitem__(self, key: str) -> Any:
        self.seen.add(_join(self.path, key))
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.seen.add(_join(self.path, key))
        return super().get(key, default)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _recording(value: Any, path: str, seen: set[str]) -> Any:
    if isinstance(value, dict):
        return Recording(value, path, seen)
    if isinstance(value, list):
        return [_recording(v, f"{path}[]", seen) for v in value]
    return value


def read_by_parser(parse: Callable[[Any], object], body: Any) -> set[str]:
    """The fields `parse` reads of `body`: the deepest paths read, the envelope's left out."""
    seen: set[str] = set()
    parse(_recording(body, "", seen))
    deeper = {p for p in seen for q in seen if q.startswith((f"{p}.", f"{p}["))}
    return {p for p in seen - deeper if p not in ENVELOPE}


def success_example(e: Endpoint) -> Any:
    """The snapshot's first 2xx example of the endpoint's answer (composed from its parts where it has none)."""
    operation = operations(navigable(snapshot()))[key_of(e.method, e.path)]
    return next(body for status, _how, body in answer_examples(operation) if status.startswith("2"))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_the_declared_reads_are_exactly_what_the_parsers_read(endpoint: Endpoint) -> None:
    """Fed the snapshot's example, the client's parsers read exactly the registry's `reads` of the endpoint:
    `spec diff` judges a release by what the service really depends on, neither more nor less."""
    bodies = [success_example(endpoint)]
    if (endpoint.method, endpoint.path) == ("GET", "/webhooks"):
        # Both branches of the plan: our subscription found by its URL (its state is then read), and by its
        # title when its URL moved (the title is then read).
        item, events = bodies[0]["data"][0], sorted(HANDLED_EVENTS)
        bodies = [
            {**bodies[0], "data": [{**item, "url": OUR_URL, "events": events, "active": True}]},
            {**bodies[0], "data": [{**item, "title": OUR_TITLE, "url": "https://moved.example/hook"}]},
        ]
    parse = PARSERS[f"{endpoint.method} {endpoint.path}"]
    assert set().union(*(read_by_parser(parse, body) for body in bodies)) == set(endpoint.reads)


def test_a_field_read_but_not_declared_is_caught() -> None:
    """The comparison above can fail: a parser of `GET /flow/{flowId}` that also read `subName` is seen."""
    flow = next(e for e in ENDPOINTS if e.path == "/flow/{flowId}")
    read = read_by_parser(lambda b: (Flow.from_basic(record(b)), b["subName"]), success_example(flow))
    assert read - set(flow.reads) == {"subName"}


def test_every_declared_parameter_and_field_is_in_the_snapshot() -> None:
    """What the registry says the service sends and reads exists in openapi-1.34.0.json, so a release that
    removes it is noticed (a misspelt path would never be)."""
    ops = operations(navigable(snapshot()))
    for e in ENDPOINTS:
        op = flatten(ops[key_of(e.method, e.path)])
        assert set(e.params) <= set(op.params), e
        assert set(e.body) <= set(op.body), e
        assert set(e.reads) <= set(op.answer), e
