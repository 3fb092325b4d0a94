"""The client's authentication and headers against the simulator, judged from its journal."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service import __version__
from service.adapters.wiseflow import WiseflowClient
from service.core.clock import ManualClock
from service.errors import AuthError
from service.settings import Secret
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import api_requests, client_settings, make_client


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
            await asyncio.sleep(0.05)
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
    journal = await sim.journal()
    assert isinstance(info, dict)
    assert [(r["path"], r["status"]) for r in journal] == [
        ("/v1/oauth2/token", 200),
        ("/v1/license/info", 200),
        ("/v1/license/info", 401),
        ("/v1/oauth2/token", 200),
        ("/v1/license/info", 200),
    ]


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
