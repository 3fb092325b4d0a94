"""`/v1/webhooks`: subscription management kept in memory, and the test event.

Subscriptions receive the events they list, signed with their own secret when they gave one (else the
simulator's), in the simulator's scheme. Plain http URLs are accepted so that loopback receivers work.
"""

from __future__ import annotations

from aiohttp import web

from service.core.ports import WEBHOOK_EVENTS
from service.simulator.config import is_http_url
from service.simulator.http import ApiProblem, done, ok, path_int, read_object
from service.simulator.state import MAX_SUBSCRIPTIONS, SIM, SimState, Subscription
from service.simulator.webhooks import Event
from service.simulator.world import Json

_FIELDS = {"title": str, "url": str, "active": bool, "secret": str}


def _validated(body: Json, *, creating: bool) -> Json:
    """The fields of a webhook request, checked; `url` and `events` are required when creating."""
    allowed = {"title", "url", "active", "events"} | ({"secret"} if creating else set())
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiProblem(400, f"unknown field(s): {', '.join(unknown)}", "invalid_field")
    for name in ("url", "events") if creating else ():
        if name not in body:
            raise ApiProblem(400, f"{name} is required", "missing_field")
    for name, kind in _FIELDS.items():
        if name in body and not isinstance(body[name], kind):
            raise ApiProblem(400, f"{name} must be a {kind.__name__}", "invalid_field")
    if "url" in body and not is_http_url(body["url"]):
        raise ApiProblem(400, "url must be an http(s) URL with a host", "invalid_field")
    if "events" in body:
        events = body["events"]
        if not isinstance(events, list) or not events or not all(e in WEBHOOK_EVENTS for e in events):
            raise ApiProblem(
                400, f"events must be a non-empty list among {', '.join(WEBHOOK_EVENTS)}", "invalid_field"
            )
    return body


def _subscription(request: web.Request, sim: SimState) -> Subscription:
    webhook_id = path_int(request, "webhookId")
    sub = sim.subscriptions.get(webhook_id)
    if sub is None:
        raise ApiProblem(404, f"webhook {webhook_id} not found", "not_found")
    return sub


async def list_webhooks(request: web.Request) -> web.Response:
    """`GET /webhooks`."""
    sim = request.app[SIM]
    return ok([s.to_json() for s in sim.subscriptions.values()], shapes=sim.scenario.shapes)


async def create_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks` -> 201 with the webhook."""
    sim = request.app[SIM]
    body = _validated(await read_object(request), creating=True)
    if len(sim.subscriptions) >= MAX_SUBSCRIPTIONS:
        raise ApiProblem(400, f"a licence may have at most {MAX_SUBSCRIPTIONS} webhooks", "limit_exceeded")
    now = sim.clock.wall()
    sub = Subscription(
        id=sim.next_subscription_id,
        title=body.get("title", ""),
        url=body["url"],
        active=body.get("active", True),
        events=list(dict.fromkeys(body["events"])),
        secret=body.get("secret") or None,
        created_at=now,
        updated_at=now,
    )
    sim.next_subscription_id += 1
    sim.subscriptions[sub.id] = sub
    return ok(sub.to_json(), shapes=sim.scenario.shapes, status=201)


async def get_webhook(request: web.Request) -> web.Response:
    """`GET /webhooks/{webhookId}`."""
    sim = request.app[SIM]
    return ok(_subscription(request, sim).to_json(), shapes=sim.scenario.shapes)


async def update_webhook(request: web.Request) -> web.Response:
    """`PUT /webhooks/{webhookId}`: changes the fields given."""
    sim = request.app[SIM]
    sub = _subscription(request, sim)
    body = _validated(await read_object(request), creating=False)
    sub.title = body.get("title", sub.title)
    sub.url = body.get("url", sub.url)
    sub.active = body.get("active", sub.active)
    sub.events = list(dict.fromkeys(body.get("events", sub.events)))
    sub.updated_at = sim.clock.wall()
    return ok(sub.to_json(), shapes=sim.scenario.shapes)


async def delete_webhook(request: web.Request) -> web.Response:
    """`DELETE /webhooks/{webhookId}`."""
    sim = request.app[SIM]
    sub = _subscription(request, sim)
    del sim.subscriptions[sub.id]
    return done(shapes=sim.scenario.shapes)


async def test_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/{webhookId}/test`: one event of the subscription's first type, about the first flow."""
    sim = request.app[SIM]
    sub = _subscription(request, sim)
    first_flow = next(iter(sim.world.flows))
    event = Event(sim.world.next_sequence(), sub.events[0], first_flow, None)
    sim.dispatcher.send_once(sim.subscription_target(sub), event)
    return done(shapes=sim.scenario.shapes)


def add_routes(app: web.Application) -> None:
    """Register the webhook endpoints under `/v1`."""
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_post("/v1/webhooks", create_webhook)
    app.router.add_get("/v1/webhooks/{webhookId}", get_webhook)
    app.router.add_put("/v1/webhooks/{webhookId}", update_webhook)
    app.router.add_delete("/v1/webhooks/{webhookId}", delete_webhook)
    app.router.add_post("/v1/webhooks/{webhookId}/test", test_webhook)
