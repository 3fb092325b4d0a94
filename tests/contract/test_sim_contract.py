"""Every simulator response the integration uses, success and error, validated against the WISEflow spec.

Each test runs against both envelope shapes: as the spec's examples show them (the default) and in the
schemas' own form.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service.core.clock import ManualClock
from tests.conftest import SimFactory, SimHandle
from tests.contract.spec_check import check_response, check_schema


@pytest.fixture(params=["examples", "schema"])
async def simulator(make_simulator: SimFactory, request: pytest.FixtureRequest) -> SimHandle:
    """A calm simulator answering in one of the two envelope shapes."""
    return await make_simulator(shapes=request.param)


FORM = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"}
ERROR_ENVELOPE = "general-api-error-response"


async def call(sim: SimHandle, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """One /v1 call with the API key unless headers are given; returns status, headers and raw body."""
    kwargs.setdefault("headers", sim.auth_headers())
    async with sim.session.request(method, sim.api_url + path, **kwargs) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_token_responses(simulator: SimHandle) -> None:
    """POST /oauth2/token: 200 (oauth2TokenResponse) and 400 (oauth2TokenError)."""
    status, _, body = await call(simulator, "POST", "/oauth2/token", data=FORM, headers={})
    assert status == 200
    check_response("POST", "/oauth2/token", status, body)
    status, _, body = await call(
        simulator, "POST", "/oauth2/token", data={**FORM, "client_secret": "x"}, headers={}
    )
    assert status == 400
    check_response("POST", "/oauth2/token", status, body)


async def test_flows_search_responses(simulator: SimHandle) -> None:
    """POST /flows/search: 200 pages for each state filter, and 400 for a limit over 100."""
    for states in ([], ["NOT_ACTIVATED"], ["ACTIVATED", "PARTICIPATION_STARTED"], ["CONCLUDED", "ARCHIVED"]):
        status, _, body = await call(
            simulator, "POST", "/flows/search?limit=100", json={"metadata": {"states": states}}
        )
        assert status == 200
        check_response("POST", "/flows/search", status, body)
    status, _, body = await call(simulator, "POST", "/flows/search?limit=101", json={})
    assert status == 400
    check_response("POST", "/flows/search", status, body)


async def test_every_flow_validates_in_every_state(simulator: SimHandle) -> None:
    """GET /flow/{id}, its assessments and its participants validate for all flows, before and after changes."""
    await simulator.advance({"grade_changes": 30, "state_changes": 10, "paper_submissions": 10})
    truth = await simulator.truth()
    assert {f["flow"]["state"] for f in truth["flows"]} == {0, 1, 2, 3, 4, 5}
    for entry in truth["flows"]:
        flow_id = entry["flow"]["id"]
        args = {"flowId": flow_id}
        for path in (f"/flow/{flow_id}", f"/flow/{flow_id}/assessments", f"/flows/{flow_id}/participants"):
            status, _, body = await call(simulator, "GET", path)
            assert status == 200
            pattern = re.sub(r"/\d+", "/{flowId}", path)
            check_response("GET", pattern, status, body, view_args=args)


async def test_truth_uses_the_spec_shapes(simulator: SimHandle) -> None:
    """Truth's flows, participants and assessments are basic-flow, flow-participant-response and assessment."""
    await simulator.advance({"grade_changes": 10, "paper_submissions": 5})
    for entry in (await simulator.truth())["flows"]:
        check_schema("basic-flow", entry["flow"])
        check_schema("assessments", entry["assessments"])
        for participant in entry["participants"]:
            check_schema("flow-participant-response", participant)


async def test_not_found_responses(simulator: SimHandle) -> None:
    """404s: documented envelopes for participants and webhooks, the common one where the spec has no body."""
    for path, pattern, args in (
        ("/flows/9/participants", "/flows/{flowId}/participants", {"flowId": 9}),
        ("/webhooks/9", "/webhooks/{webhookId}", {"webhookId": 9}),
    ):
        status, _, body = await call(simulator, "GET", path)
        assert status == 404
        check_response("GET", pattern, status, body, view_args=args)
    for path in ("/flow/9", "/flow/9/assessments"):
        status, _, body = await call(simulator, "GET", path)
        assert status == 404
        check_schema(ERROR_ENVELOPE, json.loads(body))


async def test_participants_bad_limit(simulator: SimHandle) -> None:
    """GET /flows/{id}/participants with limit 101: documented 400."""
    status, _, body = await call(simulator, "GET", "/flows/1001/participants?limit=101")
    assert status == 400
    check_response("GET", "/flows/{flowId}/participants", status, body, view_args={"flowId": 1001})


async def test_participation_events_responses(simulator: SimHandle) -> None:
    """POST /participation-events: 200 with events after hand-ins, 400 for a one-sided window."""
    await simulator.advance({"paper_submissions": 3})
    now = int(simulator.clock.wall())
    window = {"timestamp": {"from": now - 60, "to": now + 60}, "pagination": {"limit": 1000, "offset": 0}}
    status, _, body = await call(simulator, "POST", "/participation-events", json=window)
    assert status == 200
    assert json.loads(body)["data"]
    check_response("POST", "/participation-events", status, body)
    status, _, body = await call(simulator, "POST", "/participation-events", json={"timestamp": {"from": 1}})
    assert status == 400
    check_response("POST", "/participation-events", status, body)


async def test_webhook_management_responses(simulator: SimHandle) -> None:
    """/webhooks CRUD and test: 200/201 bodies and 400/404 errors all validate."""
    request = {"title": "t", "url": "https://example.org/hook", "events": ["FINAL_GRADE"], "active": True}
    status, _, body = await call(simulator, "POST", "/webhooks", json=request)
    assert status == 201
    check_response("POST", "/webhooks", status, body)
    webhook_id = json.loads(body)["data"]["id"]
    one = {"webhookId": webhook_id}
    cases: list[tuple[str, str, str, dict[str, Any], dict[str, Any], int]] = [
        ("GET", "/webhooks", "/webhooks", {}, {}, 200),
        ("POST", "/webhooks", "/webhooks", {}, {"json": {"url": "x"}}, 400),
        ("GET", f"/webhooks/{webhook_id}", "/webhooks/{webhookId}", one, {}, 200),
        ("PUT", f"/webhooks/{webhook_id}", "/webhooks/{webhookId}", one, {"json": {"title": "u"}}, 200),
        ("PUT", "/webhooks/99", "/webhooks/{webhookId}", {"webhookId": 99}, {"json": {}}, 404),
        ("POST", f"/webhooks/{webhook_id}/test", "/webhooks/{webhookId}/test", one, {}, 200),
        ("POST", "/webhooks/99/test", "/webhooks/{webhookId}/test", {"webhookId": 99}, {}, 404),
        ("DELETE", f"/webhooks/{webhook_id}", "/webhooks/{webhookId}", one, {}, 200),
        ("DELETE", f"/webhooks/{webhook_id}", "/webhooks/{webhookId}", one, {}, 404),
    ]
    for method, path, pattern, args, kwargs, expected in cases:
        status, _, body = await call(simulator, method, path, **kwargs)
        assert (method, path, status) == (method, path, expected)
        check_response(method, pattern, status, body, view_args=args)


def test_the_checker_rejects_a_wrong_shape() -> None:
    """The validation used here can fail: a basic-flow without its dates, a string state, a null data."""
    with pytest.raises(Exception, match="required"):
        check_response("GET", "/flow/{flowId}", 200, b'{"id": 1}', view_args={"flowId": 1})
    with pytest.raises(AssertionError):
        check_schema("flows-search-response", {"flowId": 1, "state": "MELTED"})
    with pytest.raises(AssertionError):
        check_schema(ERROR_ENVELOPE, {"success": False, "error": {"code": "400"}})


async def test_license_info(simulator: SimHandle) -> None:
    """GET /license/info validates as license-info."""
    status, _, body = await call(simulator, "GET", "/license/info")
    assert status == 200
    check_response("GET", "/license/info", status, body)


async def test_401_is_the_error_envelope(simulator: SimHandle) -> None:
    """Missing credentials: 401 with the common error envelope."""
    status, _, body = await call(simulator, "GET", "/flow/1001", headers={})
    assert status == 401
    check_schema(ERROR_ENVELOPE, json.loads(body))


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ({"maintenance": {"seconds": 30, "retry_after": 10}}, 503),
        ({"storm_429": {"seconds": 5, "retry_after": 2}}, 429),
        ({"error_rate": 1.0}, 500),
    ],
)
async def test_fault_answers_are_error_envelopes(
    simulator: SimHandle, scenario: dict[str, Any], status: int
) -> None:
    """503, 429 and 5xx carry the common error envelope; 503 and 429 an integer Retry-After."""
    await simulator.scenario(scenario)
    answer, headers, body = await call(simulator, "POST", "/flows/search", json={})
    assert answer == status
    check_schema(ERROR_ENVELOPE, json.loads(body))
    if status != 500:
        assert headers["Retry-After"].isdigit()


async def test_rate_limited_answer_is_an_error_envelope(make_simulator: SimFactory) -> None:
    """A 429 from the per-second window carries the envelope and an integer Retry-After."""
    sim = await make_simulator(clock=ManualClock(), rate_per_second=1)
    await call(sim, "GET", "/license/info")
    status, headers, body = await call(sim, "GET", "/license/info")
    assert status == 429
    assert headers["Retry-After"] == "1"
    check_schema(ERROR_ENVELOPE, json.loads(body))


KEY = {"x-api-key": "demo-api-key"}
ERROR_CASES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/flows/1001/participants?offset=-1", {"headers": KEY}, 400),
    ("GET", "/flows/1001/participants?limit=ten", {"headers": KEY}, 400),
    ("GET", "/flows/1001/participants?limit=0", {"headers": KEY}, 400),
    ("POST", "/flows/search?offset=x", {"headers": KEY, "json": {}}, 400),
    ("POST", "/flows/search", {"headers": KEY, "data": b"{not json"}, 400),
    ("POST", "/flows/search", {"headers": KEY, "json": [1]}, 400),
    ("POST", "/participation-events", {"headers": KEY, "json": {"pagination": {"offset": -1}}}, 400),
    ("GET", "/flow/abc", {"headers": KEY}, 400),
    ("GET", "/license/info", {"headers": {}}, 401),
    ("GET", "/license/info", {"headers": {"x-api-key": "wrong"}}, 401),
    ("GET", "/license/info", {"headers": {"Authorization": "Bearer expired-or-unknown"}}, 401),
    ("GET", "/no/such/path", {"headers": KEY}, 404),
    ("PATCH", "/flow/1001", {"headers": KEY}, 405),
    ("POST", "/flows/search", {"headers": {**KEY, "Content-Encoding": "gzip"}, "data": b"\x1f\x8b"}, 415),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), ERROR_CASES)
async def test_error_answers_are_the_common_envelope(
    simulator: SimHandle, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    """400, 401, 404, 405 and 415 answers are general-api-error-response with their status as code."""
    answer, headers, body = await call(simulator, method, path, **kwargs)
    assert (status, "application/json") == (answer, headers["Content-Type"].split(";")[0])
    envelope = json.loads(body)
    check_schema(ERROR_ENVELOPE, envelope)
    assert (False, status) == (envelope["success"], envelope["error"]["code"])
    assert envelope["error"]["errors"][0]["message"]
