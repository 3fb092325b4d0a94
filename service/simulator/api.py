"""The `/v1` read endpoints of the simulator, with the shapes of `openapi-1.34.0.json`.

`GET /flow/{flowId}` answers a bare basic-flow and `GET /flow/{flowId}/assessments` a bare array, as the
spec has it; the rest use the envelope. Page limits above an endpoint's maximum are a 400.
"""

from __future__ import annotations

import math
from typing import Final

from aiohttp import web

from service.simulator.auth import check_client
from service.simulator.http import ApiProblem, json_response, ok, page, path_int, query_page, read_object
from service.simulator.search import event_filter, search_flows
from service.simulator.state import SIM, SimState
from service.simulator.world import Json

SEARCH_MAX: Final = 100
PARTICIPANTS_MAX: Final = 100
EVENTS_MAX: Final = 1000
FORM: Final = "application/x-www-form-urlencoded"


def _oauth_error(error: str, description: str) -> web.Response:
    """RFC 6749 error answer (oauth2TokenError)."""
    return json_response({"error": error, "error_description": description}, 400, {"Cache-Control": "no-store"})


async def token(request: web.Request) -> web.Response:
    """`POST /oauth2/token`: client credentials, form-encoded (client_secret_post)."""
    sim = request.app[SIM]
    if request.content_type != FORM:
        return _oauth_error("invalid_request", f"the body must be {FORM}")
    try:
        form = await request.post()
    except ValueError:
        return _oauth_error("invalid_request", "the form body could not be parsed")
    fields = {name: form.get(name) for name in ("grant_type", "client_id", "client_secret")}
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        return _oauth_error("invalid_request", f"missing parameter(s): {', '.join(missing)}")
    if fields["grant_type"] != "client_credentials":
        return _oauth_error("unsupported_grant_type", "only grant_type=client_credentials is supported")
    client_id, client_secret = str(fields["client_id"]), str(fields["client_secret"])
    if not check_client(sim.config, client_id, client_secret):
        return _oauth_error("invalid_client", "client authentication failed")
    ttl = sim.scenario.token_ttl
    access_token = sim.tokens.issue(client_id, sim.clock.monotonic(), ttl)
    body = {
        "access_token": access_token,
        "expires_in": max(1, math.ceil(ttl)),
        "token_type": "bearer",
        "scope": "api",
    }
    return json_response(body, 200, {"Cache-Control": "no-store"})


def _flow_id(request: web.Request, sim: SimState) -> int:
    """The path's flowId, which must name a flow (else 404)."""
    flow_id = path_int(request, "flowId")
    if not sim.world.has_flow(flow_id):
        raise ApiProblem(404, f"flow {flow_id} not found", "not_found")
    return flow_id


async def flows_search(request: web.Request) -> web.Response:
    """`POST /flows/search?offset&limit`: string states, filtered by the body's `metadata.states` etc."""
    sim = request.app[SIM]
    offset, limit = query_page(request, SEARCH_MAX)
    records = search_flows(sim.world, await read_object(request))
    pagination = {"limit": limit, "offset": offset, "total": len(records)}
    return ok(records[offset : offset + limit], shapes=sim.scenario.shapes, pagination=pagination)


async def get_flow(request: web.Request) -> web.Response:
    """`GET /flow/{flowId}`: the bare basic-flow (numeric state)."""
    sim = request.app[SIM]
    return json_response(sim.world.basic_flow(_flow_id(request, sim)))


async def get_assessments(request: web.Request) -> web.Response:
    """`GET /flow/{flowId}/assessments`: a bare array of assessments."""
    sim = request.app[SIM]
    return json_response(sim.world.assessments(_flow_id(request, sim)))


async def get_participants(request: web.Request) -> web.Response:
    """`GET /flows/{flowId}/participants?offset&limit`, drawn page by page."""
    sim = request.app[SIM]
    flow_id = _flow_id(request, sim)
    offset, limit = query_page(request, PARTICIPANTS_MAX)
    data = sim.world.participants(flow_id, offset, limit)
    pagination = {"limit": limit, "offset": offset, "total": sim.world.participants_per_flow}
    return ok(data, shapes=sim.scenario.shapes, pagination=pagination)


async def participation_events(request: web.Request) -> web.Response:
    """`POST /participation-events`: events in a Unix-seconds window, paged in the body (limit <= 1000)."""
    sim = request.app[SIM]
    body = await read_object(request)
    paging = body.get("pagination") or {}
    if not isinstance(paging, dict):
        raise ApiProblem(400, "pagination must be an object", "invalid_field")
    offset, limit = paging.get("offset", 0), paging.get("limit", EVENTS_MAX)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (offset, limit)):
        raise ApiProblem(400, "pagination.offset and pagination.limit must be integers", "invalid_field")
    page(offset, limit, EVENTS_MAX)
    test = event_filter(body)
    matching = [e for e in sim.world.events if test(e)]
    pagination = {"limit": limit, "offset": offset, "total": len(matching)}
    return ok(matching[offset : offset + limit], shapes=sim.scenario.shapes, pagination=pagination)


LICENSE_INFO: Final[Json] = {
    "flowTypes": [
        {"id": 2, "name": "FLOWassign", "description": "Assignment"},
        {"id": 4, "name": "FLOWlock", "description": "Locked-down exam"},
        {"id": 8, "name": "FLOWmulti", "description": "Multiple choice"},
        {"id": 16, "name": "FLOWhandin", "description": "Hand-in"},
        {"id": 32, "name": "FLOWoral", "description": "Oral exam"},
    ],
    "modules": [{"id": 1, "name": "API", "type": "API"}],
    "coverSheetElements": [],
    "flowPurposes": [
        {"id": 0, "name": "Examination", "value": "EXAMINATION"},
        {"id": 1, "name": "Course work", "value": "COURSE_WORK"},
        {"id": 2, "name": "Bachelor", "value": "BACHELOR"},
        {"id": 3, "name": "Master", "value": "MASTER"},
    ],
    "userDataTypes": [],
    "settings": {"requireUniqueEmails": True},
    "markingScales": [{"id": 1, "name": "7-point scale"}],
    "licenseRoles": [{"roleId": 1, "name": "Administrator", "isProtected": True}],
}


async def license_info(request: web.Request) -> web.Response:
    """`GET /license/info`: a fixed licence (a cheap authenticated call for probes)."""
    return json_response(LICENSE_INFO)


def add_routes(app: web.Application) -> None:
    """Register the read endpoints under `/v1`."""
    app.router.add_post("/v1/oauth2/token", token)
    app.router.add_post("/v1/flows/search", flows_search)
    app.router.add_get("/v1/flow/{flowId}", get_flow)
    app.router.add_get("/v1/flow/{flowId}/assessments", get_assessments)
    app.router.add_get("/v1/flows/{flowId}/participants", get_participants)
    app.router.add_post("/v1/participation-events", participation_events)
    app.router.add_get("/v1/license/info", license_info)
