"""Helpers shared by the client's integration tests: a client pointed at a simulator, journal arithmetic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from service.adapters.wiseflow import RequestRecord, WiseflowClient
from service.core.breaker import BreakerPolicy, Transition
from service.settings import Secret, Settings


def client_settings(api_url: str, **overrides: Any) -> Settings:
    """OAuth settings for the simulator's demo client, with short timeouts and a quick retry base."""
    base = Settings(
        api_url=api_url,
        client_id="demo-client",
        client_secret=Secret("demo-secret"),
        client_name="wiseflow-sync-tests",
        rate_per_second=50,
        rate_per_minute=3000,
        retry_base=0.05,
        retry_cap=0.5,
        connect_timeout=2.0,
        read_timeout=2.0,
        call_deadline=10.0,
    )
    return replace(base, **overrides)


class Recorder:
    """Collects the client's request records and breaker transitions."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.transitions: list[Transition] = []


QUICK_BREAKER = BreakerPolicy(failure_threshold=3, open_base=0.5, open_cap=5.0, probe_timeout=5.0)


def make_client(
    api_url: str, recorder: Recorder | None = None, breaker: BreakerPolicy = QUICK_BREAKER, **overrides: Any
) -> WiseflowClient:
    """A client for the simulator at `api_url`; `recorder` receives its records and transitions."""
    rec = recorder or Recorder()
    return WiseflowClient(
        client_settings(api_url, **overrides),
        on_request=rec.records.append,
        on_transition=rec.transitions.append,
        breaker_policy=breaker,
    )


def api_requests(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal without token requests."""
    return [r for r in journal if not r["path"].endswith("/oauth2/token")]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def misbehaving_server(
    routes: Mapping[tuple[str, str], Handler], *, token: Handler | None = None
) -> AsyncIterator[str]:
    """A tiny WISEflow stand-in on loopback that answers `routes` ((method, "/v1/...") -> handler).

    `POST /v1/oauth2/token` grants a one-hour token unless `token` is given. Yields the API base URL.
    """

    async def grant(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": "issued-token-value", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/v1/oauth2/token", token or grant)
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield f"http://127.0.0.1:{server.port}/v1"
