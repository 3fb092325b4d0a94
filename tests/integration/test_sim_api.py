"""The simulator's /v1 API on loopback: auth, pagination, world changes, journal, truth and the fake SIS."""

from __future__ import annotations

import json
import uuid

import pytest

from service.core.clock import ManualClock
from tests.conftest import SimFactory, SimHandle

FORM = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"}


async def test_oauth_token_authorises_requests(simulator: SimHandle) -> None:
    """Client credentials give a bearer token with expires_in 3599 that opens /v1."""
    async with simulator.session.post(simulator.api_url + "/oauth2/token", data=FORM) as resp:
        body = await resp.json()
    assert resp.status == 200
    assert (body["expires_in"], body["token_type"]) == (3599, "bearer")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    async with simulator.session.get(simulator.api_url + "/license/info", headers=headers) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({**FORM, "client_secret": "wrong"}, "invalid_client"),
        ({**FORM, "grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "demo-client"}, "invalid_request"),
    ],
)
async def test_oauth_errors_are_400_with_rfc6749_shape(
    simulator: SimHandle, form: dict[str, str], error: str
) -> None:
    """Bad credentials, grant types and missing fields are 400 {error, error_description}."""
    async with simulator.session.post(simulator.api_url + "/oauth2/token", data=form) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"] == error
    assert body["error_description"]


async def test_oauth_refuses_json_bodies(simulator: SimHandle) -> None:
    """The token endpoint is form-encoded only: JSON is an invalid_request."""
    async with simulator.session.post(simulator.api_url + "/oauth2/token", json=FORM) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "nope"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ],
)
async def test_missing_or_wrong_credentials_are_401(simulator: SimHandle, headers: dict[str, str]) -> None:
    """No credentials, a wrong key, an unknown token or another scheme: 401 with the error envelope."""
    async with simulator.session.get(simulator.api_url + "/license/info", headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["success"] is False
    assert body["error"]["code"] == 401


async def test_expired_token_is_401(make_simulator: SimFactory) -> None:
    """A token with a 1 s lifetime works at once and is refused after 1.5 s."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock, token_ttl=1)
    headers = {"Authorization": f"Bearer {await sim.token()}"}
    async with sim.session.get(sim.api_url + "/license/info", headers=headers) as resp:
        assert resp.status == 200
    clock.advance(1.5)
    async with sim.session.get(sim.api_url + "/license/info", headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["errors"][0]["reason"] == "invalid_token"


async def test_token_ttl_scenario_shortens_new_tokens(simulator: SimHandle) -> None:
    """{"token_ttl": 5} makes the next token's expires_in 5."""
    await simulator.scenario({"token_ttl": 5})
    async with simulator.session.post(simulator.api_url + "/oauth2/token", data=FORM) as resp:
        assert (await resp.json())["expires_in"] == 5


async def test_every_response_has_a_fresh_trace_id(simulator: SimHandle) -> None:
    """X-Trace-Id is a uuid on successes and errors alike, different each time."""
    ids = []
    for headers in (simulator.auth_headers(), {}, simulator.auth_headers()):
        async with simulator.session.get(simulator.api_url + "/flow/1001", headers=headers) as resp:
            ids.append(resp.headers["X-Trace-Id"])
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/flows/search?limit=101", {"json": {}}),
        ("GET", "/flows/1001/participants?limit=101", {}),
        ("GET", "/flows/1001/participants?limit=abc", {}),
        ("GET", "/flows/1001/participants?offset=-1", {}),
        ("POST", "/participation-events", {"json": {"pagination": {"limit": 1001}}}),
    ],
)
async def test_limits_over_the_maximum_are_400(
    simulator: SimHandle, method: str, path: str, kwargs: dict[str, object]
) -> None:
    """A limit above the endpoint's maximum (100, or 1000 for events) or not a number is 400."""
    headers = simulator.auth_headers()
    async with simulator.session.request(method, simulator.api_url + path, headers=headers, **kwargs) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["success"] is False


@pytest.mark.parametrize(
    "path", ["/flow/999", "/flow/999/assessments", "/flows/999/participants", "/webhooks/42", "/no/such/path"]
)
async def test_unknown_ids_are_404(simulator: SimHandle, path: str) -> None:
    """Unknown flows, webhooks and paths are 404 with the error envelope."""
    async with simulator.session.get(simulator.api_url + path, headers=simulator.auth_headers()) as resp:
        body = await resp.json()
    assert resp.status == 404
    assert body["error"]["code"] == 404


async def test_search_filters_on_states_and_pages(simulator: SimHandle) -> None:
    """metadata.states filters; offset/limit page; total counts every match."""
    body = {"metadata": {"states": ["CONCLUDED", "ARCHIVED"]}}
    url = simulator.api_url + "/flows/search?limit=3&offset=0"
    async with simulator.session.post(url, json=body, headers=simulator.auth_headers()) as resp:
        first = await resp.json()
    assert {r["state"] for r in first["data"]} <= {"CONCLUDED", "ARCHIVED"}
    assert first["pagination"] == {"limit": 3, "offset": 0, "total": 8}
    truth = await simulator.truth()
    expected = [f["flow"]["id"] for f in truth["flows"] if f["state"] in ("CONCLUDED", "ARCHIVED")]
    assert expected[:3] == [r["flowId"] for r in first["data"]]


async def test_participants_page_through_the_whole_flow(make_simulator: SimFactory) -> None:
    """Pages of 100 cover 250 participants exactly once."""
    sim = await make_simulator(participants=250)
    seen: list[int] = []
    for offset in (0, 100, 200, 300):
        url = f"{sim.api_url}/flows/1001/participants?offset={offset}&limit=100"
        async with sim.session.get(url, headers=sim.auth_headers()) as resp:
            body = await resp.json()
        seen.extend(p["participantId"] for p in body["data"])
        assert body["pagination"]["total"] == 250
    assert len(set(seen)) == 250
    assert len(seen) == 250


async def test_advance_changes_what_the_api_serves(simulator: SimHandle) -> None:
    """A grade change shows in the flow's assessments; a hand-in shows in participation events."""
    started = int(simulator.clock.wall())
    changes = await simulator.advance({"grade_changes": 1, "paper_submissions": 1})
    grade = next(c for c in changes if c["event"] in ("ASSESSMENT", "FINAL_GRADE"))
    hand_in = next(c for c in changes if c["event"] == "PAPER_SUBMITTED")
    headers = simulator.auth_headers()
    async with simulator.session.get(
        f"{simulator.api_url}/flow/{grade['flowId']}/assessments", headers=headers
    ) as r:
        assessments = {a["participantId"]: a for a in await r.json()}
    assert assessments[grade["participantId"]]["grade"] == grade["grade"]
    window = {"timestamp": {"from": started - 1, "to": started + 60}, "types": ["PAPER_HANDED_IN"]}
    async with simulator.session.post(
        simulator.api_url + "/participation-events", json=window, headers=headers
    ) as r:
        events = (await r.json())["data"]
    assert [hand_in["flowId"]] == [e["flowId"] for e in events]


async def test_empty_advance_is_one_default_step(simulator: SimHandle) -> None:
    """An empty body makes changes with increasing sequence numbers, each naming flow and participant."""
    changes = await simulator.advance()
    assert changes
    assert [c["sequence"] for c in changes] == sorted(c["sequence"] for c in changes)
    assert all({"event", "sequence", "flowId", "participantId"} <= set(c) for c in changes)


async def test_journal_records_v1_requests_with_credentials_masked(simulator: SimHandle) -> None:
    """The journal lists /v1 requests (not /_sim), masks credentials and cookies, and filters by since."""
    headers = {**simulator.auth_headers(), "Cookie": "session=abc", "X-Client-Name": "tests"}
    async with simulator.session.get(simulator.api_url + "/flow/1001?x=1", headers=headers) as resp:
        assert resp.status == 200
    await simulator.advance()
    entries = await simulator.journal()
    assert [e["path"] for e in entries] == ["/v1/flow/1001"]
    entry = entries[0]
    assert (entry["status"], entry["client"], entry["query"], entry["method"]) == (
        200,
        "api-key",
        {"x": "1"},
        "GET",
    )
    assert (entry["headers"]["x-api-key"], entry["headers"]["Cookie"]) == ("***", "***")
    assert entry["headers"]["X-Client-Name"] == "tests"
    assert await simulator.journal(since=entry["time"] + 1) == []
    await simulator.clear_journal()
    assert await simulator.journal() == []


async def test_truth_has_every_flow_with_participants_and_assessments(simulator: SimHandle) -> None:
    """Truth lists all flows with their participants; concluded flows carry assessments."""
    truth = await simulator.truth()
    assert len(truth["flows"]) == 24
    assert all(len(f["participants"]) == 25 for f in truth["flows"])
    assert all(f["assessments"] for f in truth["flows"] if f["state"] == "CONCLUDED")


async def test_sis_counts_duplicates_by_idempotency_key(simulator: SimHandle) -> None:
    """201 for a new key, 200 for a repeat; unique and duplicate counts follow."""
    record = {"flowId": 1005, "participantId": 100500001, "grade": "12", "adminGrade": "12", "date": 1}
    statuses = []
    for key in ("k1", "k1", "k2"):
        async with simulator.session.post(
            simulator.sis_url, json=record, headers={"Idempotency-Key": key}
        ) as r:
            statuses.append(r.status)
    assert statuses == [201, 200, 201]
    grades = await simulator.sis_grades()
    assert (grades["unique"], grades["duplicates"], len(grades["deliveries"])) == (2, 1, 3)


async def test_sis_accepts_a_withdrawal_and_refuses_one_that_carries_a_grade(simulator: SimHandle) -> None:
    """`withdrawn: true` with nulls is recorded and counted; with a grade, or not a boolean, it is 400."""
    base = {"flowId": 1005, "participantId": 100500001, "adminGrade": None, "date": None}
    statuses = []
    for key, extra in (("w1", {"grade": None, "withdrawn": True}), ("w2", {"grade": "12", "withdrawn": True})):
        async with simulator.session.post(
            simulator.sis_url, json={**base, **extra}, headers={"Idempotency-Key": key}
        ) as r:
            statuses.append(r.status)
    async with simulator.session.post(
        simulator.sis_url, json={**base, "grade": None, "withdrawn": "yes"}, headers={"Idempotency-Key": "w3"}
    ) as r:
        statuses.append(r.status)
    assert statuses == [201, 400, 400]
    grades = await simulator.sis_grades()
    assert (grades["unique"], grades["withdrawals"]) == (1, 1)


async def test_sis_requires_an_idempotency_key_and_honours_its_error_rate(simulator: SimHandle) -> None:
    """No key is 400; with sis_error_rate 1 every delivery is 503 and nothing is recorded."""
    record = {"flowId": 1005, "participantId": 100500001, "grade": "12", "adminGrade": None, "date": None}
    async with simulator.session.post(simulator.sis_url, json=record) as resp:
        assert resp.status == 400
    await simulator.scenario({"sis_error_rate": 1.0})
    async with simulator.session.post(simulator.sis_url, json=record, headers={"Idempotency-Key": "k"}) as resp:
        assert resp.status == 503
    assert (await simulator.sis_grades())["deliveries"] == []


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", "/v1/flows/search", b"{not json"),
        ("POST", "/v1/flows/search", b"[1, 2]"),
        ("POST", "/v1/flows/search", b'{"metadata": {"states": ["MELTED"]}}'),
        ("POST", "/v1/flows/search", b'{"metadata": "CONCLUDED"}'),
        ("POST", "/v1/flows/search", b'{"metadata": {"createdAt": {"from": "yesterday"}}}'),
        ("POST", "/v1/participation-events", b'{"timestamp": {"from": 1}}'),
        ("POST", "/v1/participation-events", b'{"flowId": "1001"}'),
        ("POST", "/v1/webhooks", b'{"url": 5, "events": ["FINAL_GRADE"]}'),
        ("POST", "/v1/webhooks", b'{"url": "https://x", "events": ["NOPE"]}'),
        ("GET", "/v1/flow/abc", b""),
        ("POST", "/_sim/advance", b'{"grade_changes": "many"}'),
        ("POST", "/_sim/scenario", b"\xff\xfe"),
        ("POST", "/_sis/grades", b'{"flowId": "x", "participantId": 1}'),
    ],
)
async def test_malformed_requests_are_400_envelopes(
    simulator: SimHandle, method: str, path: str, data: bytes
) -> None:
    """Malformed JSON, wrong types and unknown enum values get 400 with the error envelope, never a 500."""
    headers = {**simulator.auth_headers(), "Content-Type": "application/json", "Idempotency-Key": "k"}
    async with simulator.session.request(method, simulator.root + path, data=data, headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["success"] is False
    assert body["error"]["message"]


async def test_wrong_method_is_405_envelope(simulator: SimHandle) -> None:
    """A method a path does not support is 405 with the envelope, not a stack trace."""
    async with simulator.session.delete(
        simulator.api_url + "/flows/search", headers=simulator.auth_headers()
    ) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (405, 405)


async def test_journal_never_holds_a_credential(simulator: SimHandle) -> None:
    """Secrets in headers, cookies and the query of token and API calls are masked; 415s are journalled too."""
    token = await simulator.token()
    calls = [
        ("POST", "/oauth2/token?client_secret=demo-secret", {"data": FORM}),
        ("GET", "/license/info?access_token=" + token, {"headers": {"Authorization": f"Bearer {token}"}}),
        ("GET", "/license/info", {"headers": {"x-api-key": "demo-api-key", "Cookie": "sid=demo-secret"}}),
        ("POST", "/flows/search", {"headers": {"Content-Encoding": "gzip", "x-api-key": "demo-api-key"}}),
    ]
    for method, path, kwargs in calls:
        async with simulator.session.request(method, simulator.api_url + path, **kwargs) as resp:
            await resp.read()
    entries = await simulator.journal()
    text = json.dumps(entries)
    assert [s for s in ("demo-secret", "demo-api-key", token) if s in text] == []
    assert [e["status"] for e in entries][-4:] == [200, 200, 200, 415]
    assert entries[-4]["query"] == {"client_secret": "***"}


async def test_error_answers_and_control_paths_have_fresh_trace_ids(simulator: SimHandle) -> None:
    """404, 405, 400, 415, the fake SIS and /_sim answers each carry a new X-Trace-Id, like 200s."""
    key = simulator.auth_headers()
    calls = [
        ("GET", simulator.api_url + "/no/such/path", {"headers": key}),
        ("GET", simulator.root + "/nothing/here", {}),
        ("PATCH", simulator.api_url + "/flow/1001", {"headers": key}),
        ("GET", simulator.api_url + "/flows/1001/participants?limit=101", {"headers": key}),
        ("POST", simulator.api_url + "/flows/search", {"headers": {**key, "Content-Encoding": "gzip"}}),
        ("POST", simulator.sis_url, {}),
        ("GET", simulator.root + "/_sim/truth", {}),
        ("POST", simulator.root + "/_sim/scenario", {"json": {"nope": 1}}),
    ]
    ids = []
    for method, url, kwargs in calls:
        async with simulator.session.request(method, url, **kwargs) as resp:
            await resp.read()
            ids.append(resp.headers.get("X-Trace-Id", ""))
    assert len(set(ids)) == len(calls)
    assert all(uuid.UUID(i).version == 4 for i in ids)


async def test_journal_lines_carry_the_trace_id_of_their_answer(simulator: SimHandle) -> None:
    """Each journal line has the X-Trace-Id its answer carried (200 and 401 alike), to match client logs."""
    sent = []
    for headers in (simulator.auth_headers(), {}):
        async with simulator.session.get(simulator.api_url + "/flow/1001", headers=headers) as resp:
            sent.append((resp.status, resp.headers["X-Trace-Id"]))
    assert [(e["status"], e["traceId"]) for e in await simulator.journal()] == sent


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/path", 404),
        ("GET", "/flows", 404),
        ("PATCH", "/flow/1001", 405),
        ("GET", "/oauth2/token", 405),
    ],
)
async def test_unknown_routes_answer_before_credentials(
    simulator: SimHandle, method: str, path: str, status: int
) -> None:
    """An unknown path or method is 404/405 with or without credentials, and spends no rate budget."""
    answers = []
    for headers in ({}, {"x-api-key": "wrong"}, simulator.auth_headers()):
        async with simulator.session.request(method, simulator.api_url + path, headers=headers) as resp:
            answers.append((resp.status, (await resp.json())["error"]["code"]))
    assert answers == [(status, status)] * 3
    async with simulator.session.get(
        simulator.api_url + "/license/info", headers=simulator.auth_headers()
    ) as resp:
        assert resp.headers["X-RateLimit-Second-Remaining"] == "199"


async def test_sis_counts_a_reused_key_for_another_record_as_a_conflict(simulator: SimHandle) -> None:
    """The same key again with the same record is a duplicate; with another grade it is also a conflict."""
    record = {"flowId": 1005, "participantId": 100500001, "grade": "12", "adminGrade": "12", "date": 1}
    for body in (record, record, {**record, "grade": "7"}):
        async with simulator.session.post(simulator.sis_url, json=body, headers={"Idempotency-Key": "k1"}) as r:
            assert r.status in (200, 201)
    grades = await simulator.sis_grades()
    assert (grades["unique"], grades["duplicates"], grades["conflicts"]) == (1, 2, 1)
    assert [d["conflict"] for d in grades["deliveries"]] == [False, False, True]
    async with simulator.session.delete(simulator.sis_url) as r:
        assert r.status == 200
    assert (await simulator.sis_grades())["conflicts"] == 0
