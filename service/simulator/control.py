"""The simulator's own control surface (`/_sim/*`) and the fake SIS (`/_sis/grades`, `/_sis/scenario`).

Neither is journalled nor rate limited nor subject to scenarios: tests and demos drive the simulator
through them while the faults apply to `/v1` only.
"""

from __future__ import annotations

import contextlib
import math

from aiohttp import web

from service.simulator.advance import AdvanceError, parse_step
from service.simulator.http import ApiProblem, json_response, read_json, read_object
from service.simulator.scenario import ScenarioError
from service.simulator.sis import SisScenarioError
from service.simulator.state import SIM


async def advance(request: web.Request) -> web.Response:
    """`POST /_sim/advance`: change the world (an empty body is one default step); lists the changes."""
    sim = request.app[SIM]
    try:
        step = parse_step(await read_json(request, empty={}))
    except AdvanceError as exc:
        raise ApiProblem(400, str(exc), "invalid_advance") from None
    changes = sim.advance(step)
    return json_response({"changes": [c.to_json() for c in changes]})


async def set_scenario(request: web.Request) -> web.Response:
    """`POST /_sim/scenario`: apply faults; answers what is in force."""
    sim = request.app[SIM]
    now = sim.clock.monotonic()
    try:
        sim.scenario.apply(await read_json(request), now, sim.config)
    except ScenarioError as exc:
        raise ApiProblem(400, str(exc), "invalid_scenario") from None
    sim.windows.limit(sim.scenario.rate_per_second, sim.scenario.rate_per_minute)
    return json_response(sim.scenario.to_json(now))


async def get_scenario(request: web.Request) -> web.Response:
    """`GET /_sim/scenario`: the faults in force."""
    sim = request.app[SIM]
    return json_response(sim.scenario.to_json(sim.clock.monotonic()))


async def get_journal(request: web.Request) -> web.Response:
    """`GET /_sim/journal[?since=<unix float>]`: the `/v1` requests received, credentials masked."""
    sim = request.app[SIM]
    raw = request.query.get("since")
    since = -math.inf
    if raw is not None:
        try:
            since = float(raw)
        except ValueError:
            raise ApiProblem(400, "since must be a Unix time in seconds", "invalid_parameter") from None
    return json_response({"requests": [e for e in sim.journal if e["time"] >= since]})


async def clear_journal(request: web.Request) -> web.Response:
    """`DELETE /_sim/journal`."""
    request.app[SIM].journal.clear()
    return json_response({"cleared": True})


async def truth(request: web.Request) -> web.Response:
    """`GET /_sim/truth`: the whole world as it is now."""
    return json_response(request.app[SIM].truth())


async def deliveries(request: web.Request) -> web.Response:
    """`GET /_sim/deliveries`: every webhook delivery attempt (and loss) so far, and how many are pending."""
    dispatcher = request.app[SIM].dispatcher
    return json_response({"deliveries": list(dispatcher.log), "outstanding": dispatcher.outstanding})


async def sis_post(request: web.Request) -> web.StreamResponse:
    """`POST /_sis/grades`: record a grade delivery; 201 the first time a key is seen, 200 for a duplicate."""
    sim = request.app[SIM]
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiProblem(400, "the Idempotency-Key header is required", "missing_idempotency_key")
    body = await read_object(request)
    _check_grade(body)
    sim.sis_scenario.check(request.headers, await request.read(), body, sim.clock.wall())
    if sim.scenario.sis_error_rate > 0 and sim.fault_rng.random() < sim.scenario.sis_error_rate:
        raise ApiProblem(503, "the SIS is unavailable (simulated)", "unavailable")
    duplicate = sim.sis.record(key, body, sim.clock.wall())
    if sim.sis_scenario.endless_body:
        return await _endless(request)
    return json_response({"idempotencyKey": key, "duplicate": duplicate}, 200 if duplicate else 201)


async def _endless(request: web.Request) -> web.StreamResponse:
    """A 201 whose body never ends: a sender that reads the whole answer never finishes."""
    response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * 65536
    with contextlib.suppress(ConnectionError):
        while True:  # until the client hangs up
            await response.write(chunk)
    return response


async def sis_scenario_post(request: web.Request) -> web.Response:
    """`POST /_sis/scenario`: how the fake SIS answers deliveries (refusals, redirects, credentials)."""
    sim = request.app[SIM]
    try:
        sim.sis_scenario = sim.sis_scenario.applied(await read_json(request))
    except SisScenarioError as exc:
        raise ApiProblem(400, str(exc), "invalid_scenario") from None
    return json_response(sim.sis_scenario.to_json())


async def sis_scenario_get(request: web.Request) -> web.Response:
    """`GET /_sis/scenario`: what is in force."""
    return json_response(request.app[SIM].sis_scenario.to_json())


def _check_grade(body: dict[str, object]) -> None:
    """The sink's record: flowId and participantId integers; grade, adminGrade strings; date an integer;
    `withdrawn` (optional) a boolean, and when true, grade, adminGrade and date null."""
    for name in ("flowId", "participantId"):
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiProblem(400, f"{name} must be an integer", "invalid_field")
    for name, kind in (("grade", str), ("adminGrade", str), ("date", int)):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ApiProblem(400, f"{name} must be {'a string' if kind is str else 'an integer'} or null")
    withdrawn = body.get("withdrawn", False)
    if not isinstance(withdrawn, bool):
        raise ApiProblem(400, "withdrawn must be a boolean", "invalid_field")
    if withdrawn and any(body.get(name) is not None for name in ("grade", "adminGrade", "date")):
        raise ApiProblem(400, "a withdrawal carries no grade, adminGrade or date", "invalid_field")


async def sis_get(request: web.Request) -> web.Response:
    """`GET /_sis/grades`: deliveries, unique keys, duplicates and conflicts (a key reused for new data)."""
    return json_response(request.app[SIM].sis.to_json())


async def sis_clear(request: web.Request) -> web.Response:
    """`DELETE /_sis/grades`: forget every delivery."""
    request.app[SIM].sis.clear()
    return json_response({"cleared": True})


def add_routes(app: web.Application) -> None:
    """Register `/_sim/*` and `/_sis/grades`."""
    app.router.add_post("/_sim/advance", advance)
    app.router.add_get("/_sim/scenario", get_scenario)
    app.router.add_post("/_sim/scenario", set_scenario)
    app.router.add_get("/_sim/journal", get_journal)
    app.router.add_delete("/_sim/journal", clear_journal)
    app.router.add_get("/_sim/truth", truth)
    app.router.add_get("/_sim/deliveries", deliveries)
    app.router.add_post("/_sis/grades", sis_post)
    app.router.add_get("/_sis/grades", sis_get)
    app.router.add_delete("/_sis/grades", sis_clear)
    app.router.add_post("/_sis/scenario", sis_scenario_post)
    app.router.add_get("/_sis/scenario", sis_scenario_get)
