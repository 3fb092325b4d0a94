"""The client's authentication and headers against the simulator, judged from its journal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import __version__
from service.adapters.wiseflow import WiseflowClient
from service.adapters.wiseflow.auth import renewal_margin
from service.core.clock import ManualClock
from service.errors import ApiUnavailable, AuthError, CircuitOpen
from service.settings import Secret
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import api_requests, client_settings, make_client, misbehaving_server


async def test_every_request_carries_identification_headers(simulator: SimHandle) -> None:
    """X-Client-Name, User-Agent wiseflow-sync/<version> and Accept on every request, the token's too."""
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        [_flow async for _flow in client.search_flows()]
    journal = await simulator.journal()
    paths = {r["path"] for r in journal}
    assert {"/v1/oauth2/token", "/v1/license/info", "/v1/flows/search"} <= paths
    for request in journal:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert (headers["x-client-name"], headers["user-agent"], headers["accept"]) == (
            "wiseflow-sync-tests",
            f"wiseflow-sync/{__version__}",
            "application/json",
        )


async def test_token_is_renewed_before_it_expires(make_simulator: SimFactory) -> None:
    """With 2 s tokens, 3.5 s of calls renew the token ahead of expiry: no call ever sees a 401."""
    sim = await make_simulator(token_ttl=2)
    async with make_client(sim.api_url) as client:
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.5
        while loop.time() < end:
            await client.license_info()
            await asyncio.sleep(0.05)  # the pace of the calls under test, not a synchronisation
    journal = await sim.journal()
    tokens = [r for r in journal if r["path"] == "/v1/oauth2/token"]
    assert len(tokens) >= 2
    assert [r for r in journal if r["status"] != 200] == []


async def test_a_401_is_answered_by_one_reauthentication_and_one_replay(make_simulator: SimFactory) -> None:
    """The server forgets our token (its clock jumps past expiry): one new token, one replay, success."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock, token_ttl=60)
    async with make_client(sim.api_url) as client:
        await client.license_info()
        clock.advance(61)  # the simulator's token expired; the client still believes in it
        info = await client.license_info()
        counted = (client.token_requests, client.auth_recoveries)
    journal = await sim.journal()
    assert isinstance(info, dict)
    assert [(r["path"], r["status"]) for r in journal] == [
        ("/v1/oauth2/token", 200),
        ("/v1/license/info", 200),
        ("/v1/license/info", 401),
        ("/v1/oauth2/token", 200),
        ("/v1/license/info", 200),
    ]
    assert counted == (2, 1)


async def test_concurrent_callers_share_one_token_request(simulator: SimHandle) -> None:
    """Twenty callers starting together cause exactly one token request (single flight)."""
    async with make_client(simulator.api_url) as client:
        await asyncio.gather(*(client.license_info() for _ in range(20)))
    journal = await simulator.journal()
    assert len([r for r in journal if r["path"] == "/v1/oauth2/token"]) == 1
    assert len(api_requests(journal)) == 20


async def test_wrong_secret_is_an_auth_error_without_the_secret_logged_once_and_not_hammered(
    simulator: SimHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """400 invalid_client: AuthError naming the code, never the secret; later calls wait, no new request."""
    caplog.set_level(logging.DEBUG, logger="service.adapters.wiseflow")
    secret = "wrong-secret-value"
    async with make_client(simulator.api_url, client_secret=Secret(secret)) as client:
        with pytest.raises(AuthError) as first:
            await client.license_info()
        with pytest.raises(AuthError):
            await client.license_info()
    journal = await simulator.journal()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "invalid_client" in str(first.value)
    assert secret not in str(first.value) + caplog.text
    assert [(r["path"], r["status"]) for r in journal] == [("/v1/oauth2/token", 400)]
    assert [getattr(r, "event", None) for r in errors] == ["wiseflow.auth_failed"]


async def test_api_key_only_uses_the_x_api_key_header(simulator: SimHandle) -> None:
    """With only WISEFLOW_API_KEY set: x-api-key on each call, no token request, no Authorization."""
    settings = client_settings(
        simulator.api_url, client_id=None, client_secret=None, api_key=Secret("demo-api-key")
    )
    async with WiseflowClient(settings) as client:
        await client.license_info()
    journal = await simulator.journal()
    assert [(r["path"], r["client"]) for r in journal] == [("/v1/license/info", "api-key")]
    headers = {k.lower() for k in journal[0]["headers"]}
    assert ("x-api-key" in headers, "authorization" in headers) == (True, False)


async def test_a_second_401_ends_the_call_with_auth_error() -> None:
    """A server that refuses every token: exactly one re-authentication and one replay, then AuthError."""
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        seen.append("token")
        return web.json_response({"access_token": f"t{len(seen)}", "expires_in": 3600})

    async def info(request: web.Request) -> web.Response:
        seen.append("info")
        return web.json_response({"success": False}, status=401)

    app = web.Application()
    app.router.add_post("/v1/oauth2/token", token)
    app.router.add_get("/v1/license/info", info)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        client = make_client(f"http://127.0.0.1:{server.port}/v1")
        async with client:
            with pytest.raises(AuthError) as error:
                await client.license_info()
    assert seen == ["token", "info", "token", "info"]
    assert (error.value.status, error.value.path, error.value.method) == (401, "/license/info", "GET")


async def answer_ok(request: web.Request) -> web.Response:
    """A license-info answer."""
    return web.json_response({"success": True, "data": {"ok": True}})


def token_answer(
    status: int, body: str, counter: list[int]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A token endpoint that always answers `status` with the raw `body`, counting its requests."""

    async def token(request: web.Request) -> web.Response:
        counter.append(1)
        return web.Response(status=status, text=body, content_type="application/json")

    return token


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, '{"expires_in": 3600, "token_type": "bearer"}'),
        (200, "<html><body>Welcome</body></html>"),
        (200, '{"access_token": "abc", "expi'),
        (200, '{"access_token": 42}'),
    ],
)
async def test_a_broken_token_answer_is_api_unavailable_not_a_crash(status: int, body: str) -> None:
    """No usable token (no access_token, HTML, truncated JSON): ApiUnavailable naming the token call."""
    tokens: list[int] = []
    routes = {("GET", "/v1/license/info"): answer_ok}
    server = misbehaving_server(routes, token=token_answer(status, body, tokens))
    async with server as url, make_client(url) as client:
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
    assert (error.value.method, error.value.path, error.value.status) == ("POST", "/oauth2/token", status)
    assert "demo-secret" not in str(error.value)
    assert len(tokens) == 1  # a 200 without a token is not an answer worth repeating within the call


async def test_a_500_from_the_token_endpoint_is_retried_then_reported() -> None:
    """A 500 on the token request is a transient fault: asked again, then ApiUnavailable or CircuitOpen."""
    tokens: list[int] = []
    routes = {("GET", "/v1/license/info"): answer_ok}
    server = misbehaving_server(routes, token=token_answer(500, "<html>Internal Server Error</html>", tokens))
    async with server as url, make_client(url) as client:
        with pytest.raises((ApiUnavailable, CircuitOpen)) as error:
            await client.license_info()
    assert len(tokens) >= 2
    assert "demo-secret" not in str(error.value)


@pytest.mark.parametrize(
    ("expires_in", "renewed"),
    [(2, True), ("2", True), (0, False), (-5, False), ("soon", False), (None, False), (True, False)],
)
async def test_token_lifetime_is_read_from_expires_in_or_defaults_to_an_hour(
    expires_in: object, renewed: bool
) -> None:
    """expires_in 2 (or "2") is renewed 1.9 s later; 0, negative, garbage or missing mean WISEflow's hour."""
    clock = ManualClock()
    tokens: list[int] = []

    async def token(request: web.Request) -> web.Response:
        tokens.append(1)
        body = {"access_token": f"t{len(tokens)}"} | ({} if expires_in is None else {"expires_in": expires_in})
        return web.json_response(body)

    server = misbehaving_server({("GET", "/v1/license/info"): answer_ok}, token=token)
    async with server as url, WiseflowClient(client_settings(url), clock=clock) as client:
        await client.license_info()
        clock.advance(1.9)  # past 2 s minus the 10% margin, long before an hour
        await client.license_info()
    assert len(tokens) == (2 if renewed else 1)


async def test_no_secret_reaches_logs_spans_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Secret, issued token and 401s everywhere: none of them in any log record, span attribute or error."""
    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"success": False}, status=401)

    async def grant(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "issued-token-value", "expires_in": 3600})

    routes = {("GET", "/v1/license/info"): refuse}
    texts: list[str] = []
    async with misbehaving_server(routes, token=grant) as url:
        settings = client_settings(url, client_secret=Secret("client-secret-value"))
        async with WiseflowClient(settings, tracer=provider.get_tracer("test")) as client:
            with pytest.raises(AuthError) as oauth_error:
                await client.license_info()
        keyed = client_settings(url, client_id=None, client_secret=None, api_key=Secret("api-key-value"))
        async with WiseflowClient(keyed, tracer=provider.get_tracer("test")) as client:
            with pytest.raises(AuthError) as key_error:
                await client.license_info()
    texts += [str(oauth_error.value), repr(oauth_error.value), str(key_error.value), caplog.text]
    texts += [str(vars(record)) for record in caplog.records]
    texts += [str(dict(span.attributes or {})) + str(span.events) for span in exporter.get_finished_spans()]
    leaks = [s for s in ("client-secret-value", "issued-token-value", "api-key-value") if s in "\n".join(texts)]
    assert len(exporter.get_finished_spans()) == 5  # token, 401, token, 401 (replay), and the api-key 401
    assert leaks == []


async def test_the_token_is_attached_after_the_rate_wait_so_none_goes_out_expired(
    make_simulator: SimFactory,
) -> None:
    """2 s tokens, 6 callers at 4 req/s (a 1.5 s queue) and a 429 pause of 3 s: not one answer is a 401."""
    sim = await make_simulator(token_ttl=2)
    async with make_client(sim.api_url, rate_per_second=4, rate_per_minute=240, call_deadline=60.0) as client:
        await client.license_info()

        async def caller() -> None:
            for _ in range(2):
                await client.license_info()

        callers = asyncio.gather(*(caller() for _ in range(6)))
        await sim.scenario({"storm_429": {"seconds": 0.5, "retry_after": 3}})
        await callers
    journal = await sim.journal()
    statuses = [r["status"] for r in api_requests(journal)]
    assert statuses.count(200) == 13
    assert [r for r in journal if r["status"] == 401] == []


def test_renewal_margin_covers_the_trip_to_the_server() -> None:
    """An hour's token is renewed 60 s early, a 10 s one 5 s early (connect timeout 5 s), a 1 s one 0.5 s."""
    margins = [renewal_margin(lifetime, in_flight=5.0) for lifetime in (3599.0, 100.0, 10.0, 1.0)]
    assert margins == [60.0, 10.0, 5.0, 0.5]
