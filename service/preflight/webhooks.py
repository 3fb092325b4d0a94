"""Webhooks observed for real: a temporary subscription, WISEflow's test event, the delivery captured.

With a public URL that reaches `SYNC_HTTP_HOST:SYNC_HTTP_PORT`, the preflight listens there itself,
creates a subscription to that URL with the configured events and the first webhook secret (as `webhooks
ensure` would), changes it once (`PUT`, to validate that answer too), asks for the test event, waits for
the delivery (then once more, to see whether sequence numbers grow) and deletes the subscription: always,
also when anything before failed. Nothing is stored: the capture lives in memory.

The port is usually the service's own, so real deliveries of the institution's subscription may arrive
while the preflight listens. The temporary subscription's URL carries a one-off marker in its query
(`?preflight=<random>`; ASSUMED: WISEflow keeps a subscription URL's query, as any HTTP client does), and
only a POST with that marker is captured and answered 200; anything else gets 503 with `Retry-After`,
so WISEflow redelivers it later to the service instead of having it acknowledged here and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from service.adapters.wiseflow import WiseflowClient
from service.core.redact import redact_url
from service.errors import ServiceError
from service.settings import Settings

from .delivery import (
    Delivery,
    check_body,
    check_sequences,
    check_signature,
    check_timestamp_skew,
    shown_headers,
)
from .endpoints import endpoint_check, refusal_check
from .report import Check, failed, passed, skipped

# 1 MiB, as the service's own endpoint: a test event is a few hundred bytes.
MAX_BODY: Final = 1024 * 1024
# How long to wait for the test delivery: WISEflow's own delivery timeout is 10 s, so 30 s leaves room.
DELIVERY_WAIT: Final = 30.0
# The query parameter that marks the temporary subscription's deliveries as the preflight's own.
MARKER: Final = "preflight"
# Seconds a delivery that is not ours is asked to wait: past the preflight's whole webhook phase.
REFUSED_RETRY_AFTER: Final = 120
WEBHOOK_CHECKS: Final = (
    "webhook_delivery",
    "webhook_signature",
    "webhook_body",
    "webhook_timestamp",
    "webhook_sequence",
)
WRITE_ENDPOINTS: Final = (
    ("POST", "/webhooks"),
    ("PUT", "/webhooks/{webhookId}"),
    ("POST", "/webhooks/{webhookId}/test"),
    ("DELETE", "/webhooks/{webhookId}"),
)


class DeliveryCapture:
    """An HTTP listener that keeps the POSTs marked with `token`, and turns every other request away (503)."""

    def __init__(self, host: str, port: int, wall: Callable[[], float], token: str) -> None:
        self._host, self._port, self._wall, self._token = host, port, wall, token
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()
        self.deliveries: list[Delivery] = []
        self.refused = 0  # requests that were not the preflight's own: WISEflow redelivers them later

    def url(self, public_url: str) -> str:
        """`public_url` with this capture's marker in its query: the temporary subscription's URL."""
        return f"{public_url}{'&' if '?' in public_url else '?'}{MARKER}={self._token}"

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound (e.g. `run` is using it)."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def arrivals(self, count: int, within: float) -> int:
        """Wait up to `within` seconds until `count` deliveries arrived; how many did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(self.deliveries) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        return len(self.deliveries)

    async def _receive(self, request: web.Request) -> web.Response:
        received = self._wall()
        marker = request.query.get(MARKER, "")
        if request.method != "POST" or not hmac.compare_digest(marker.encode(), self._token.encode()):
            # Not ours (a real delivery of the institution's subscription, say): never acknowledged here.
            self.refused += 1
            later = {"Retry-After": str(REFUSED_RETRY_AFTER)}
            return web.json_response({"error": "preflight_in_progress"}, status=503, headers=later)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"received": False}, status=413)
        headers = tuple((str(k), v) for k, v in request.headers.items())
        self.deliveries.append(Delivery(request.path, headers, body, received))
        self._arrived.set()
        return web.json_response({"received": True})


def without_public_url() -> list[Check]:
    """What cannot be checked without `--public-url`, as skipped checks."""
    why = (
        "needs --public-url (an https URL that reaches SYNC_HTTP_HOST:SYNC_HTTP_PORT) so that WISEflow's "
        "test delivery can be observed"
    )
    checks = [skipped(f"endpoint {m} {p}", f"not sent: {why}") for m, p in WRITE_ENDPOINTS]
    return checks + [skipped(name, why) for name in WEBHOOK_CHECKS]


async def observe(
    client: WiseflowClient, settings: Settings, public_url: str, wall: Callable[[], float], wait: float
) -> list[Check]:
    """Listen, subscribe, ask for the test event, capture it, unsubscribe; every webhook check."""
    capture = DeliveryCapture(settings.http_host, settings.http_port, wall, secrets.token_hex(16))
    where = f"{settings.http_host}:{settings.http_port}"
    try:
        await capture.start()
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        why = f"could not listen on {where} ({cause}): stop `run` there or set SYNC_HTTP_PORT"
        return [skipped(f"endpoint {m} {p}", why) for m, p in WRITE_ENDPOINTS] + [
            failed("webhook_delivery", why),
            *[skipped(n, "no delivery to look at") for n in WEBHOOK_CHECKS[1:]],
        ]
    try:
        checks, asked = await _subscribe_and_test(client, settings, public_url, capture, wait)
    finally:
        await capture.stop()
    return checks + _delivery_checks(
        capture.deliveries, settings, public_url, where, asked, wait, capture.refused
    )


async def _subscribe_and_test(
    client: WiseflowClient, settings: Settings, public_url: str, capture: DeliveryCapture, wait: float
) -> tuple[list[Check], bool]:
    """The subscription's lifecycle; (the endpoint checks, whether the test event was asked for)."""
    body: dict[str, Any] = {
        "title": f"{settings.client_name} preflight (temporary)",
        "url": capture.url(public_url),
        "active": True,
        "events": list(settings.webhook_events),
    }
    if settings.webhook_secrets:
        body["secret"] = settings.webhook_secrets[0].reveal()
    checks: list[Check] = []
    try:
        created = await client.request("POST", "/webhooks", json=body)
    except ServiceError as exc:
        why = "no temporary subscription (POST /webhooks was refused)"
        checks.append(refusal_check("POST", "/webhooks", exc))
        return checks + [skipped(f"endpoint {m} {p}", why) for m, p in WRITE_ENDPOINTS[1:]], False
    checks.append(endpoint_check("POST", "/webhooks", "webhook-api-response", created))
    webhook_id = _id_of(created.body)
    if webhook_id is None:
        why = "the answer to POST /webhooks named no subscription id"
        return checks + [failed(f"endpoint {m} {p}", why) for m, p in WRITE_ENDPOINTS[1:]], False
    asked = False
    try:
        update, _ = await _call(client, "PUT", webhook_id, "", {"title": body["title"]}, "webhook-api-response")
        test, asked = await _call(client, "POST", webhook_id, "/test", None, "success-api-response-no-data")
        checks += [update, test]
        if asked and await capture.arrivals(1, within=wait):
            # A second test event: whether sequences grow is observable only with two (`webhook_sequence`).
            _, again = await _call(client, "POST", webhook_id, "/test", None, "success-api-response-no-data")
            await capture.arrivals(2 if again else 1, within=wait)
    finally:
        # Also when interrupted: a cancelled task still runs its finally, and this await with it.
        checks.append(await _delete(client, webhook_id))
    return checks, asked


async def _call(
    client: WiseflowClient, method: str, webhook_id: int, suffix: str, json: Any, schema: str
) -> tuple[Check, bool]:
    """One request about the temporary subscription: its check, and whether WISEflow answered 2xx."""
    template = "/webhooks/{webhookId}" + suffix
    try:
        reply = await client.request(method, f"/webhooks/{webhook_id}{suffix}", json=json)
    except ServiceError as exc:
        return refusal_check(method, template, exc), False
    return endpoint_check(method, template, schema, reply), True


async def _delete(client: WiseflowClient, webhook_id: int) -> Check:
    """Delete the temporary subscription; a failure says how to do it by hand."""
    check, deleted = await _call(client, "DELETE", webhook_id, "", None, "success-api-response-no-data")
    if not deleted:
        left = f"temporary subscription {webhook_id} is left: delete it in WISEflow"
        return failed(check.name, f"{check.detail}; {left}")
    return check


def _delivery_checks(
    deliveries: list[Delivery],
    settings: Settings,
    public_url: str,
    where: str,
    asked: bool,
    wait: float,
    refused: int,
) -> list[Check]:
    if not deliveries:
        why = "no delivery to look at"
        if not asked:
            first = skipped("webhook_delivery", "the test event could not be asked for (see the endpoints)")
        else:
            first = failed(
                "webhook_delivery",
                f"no delivery within {wait:g} s of the test request: check that {redact_url(public_url)} "
                f"reaches {where} (proxy, ingress, firewall, https certificate)",
            )
        return [first, *[skipped(n, why) for n in WEBHOOK_CHECKS[1:]]]
    delivery = deliveries[0]
    others = f"; {refused} other request(s) answered 503 (WISEflow redelivers them)" if refused else ""
    arrived = passed(
        "webhook_delivery", f"arrived at {delivery.path}; headers: {shown_headers(delivery)}{others}"
    )
    return [
        arrived,
        check_signature(delivery, settings),
        check_body(delivery, settings),
        check_timestamp_skew(delivery, settings),
        check_sequences(deliveries, settings),
    ]


def _id_of(body: Any) -> int | None:
    data = body.get("data", body) if isinstance(body, dict) else None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
