"""The client's endpoint registry (what `certify` lists): every endpoint the client calls, only real ones."""

from __future__ import annotations

import inspect
import re

import orjson

from service.adapters.wiseflow import client
from service.adapters.wiseflow.endpoints import ENDPOINTS, Endpoint
from service.adapters.wiseflow.records import route_of
from service.spec import __path__ as spec_dir

_CALL = re.compile(r'"(GET|POST|PUT|DELETE)",\s*f?"(/[^"]+)"')
_FORMATTED = re.compile(r"\{[^}]*\}")  # an f-string's {int(flow_id)}: any id


def test_every_endpoint_the_client_calls_is_registered() -> None:
    """Each method/path literal of the client's endpoint methods is an entry of the registry."""
    calls = _CALL.findall(inspect.getsource(client))
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
