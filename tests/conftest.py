"""Shared fixtures: a running WISEflow simulator on loopback.

Fixtures (function scope, started in the test's own event loop on 127.0.0.1, port 0):

- ``simulator`` -> `SimHandle`: a calm simulator with the default config (seed 1, 24 flows x 25
  participants, credentials ``demo-client`` / ``demo-secret`` / ``demo-api-key``, webhook secret
  ``demo-webhook-secret``, no webhook URL) on the real clock. The environment is not read.
- ``make_simulator`` -> ``async (clock: Clock | None = None, profile: str = "calm", **overrides) -> SimHandle``:
  starts another simulator with `SimConfig` fields overridden (e.g. ``token_ttl=1``,
  ``webhook_url=...``, ``redelivery_interval=0.05``, ``duplicate_rate=1.0``); pass a `ManualClock` to
  drive token expiry, rate windows and scenario windows without sleeping. Every simulator it started
  is stopped at teardown.

`SimHandle` (stable; other tests rely on it):

- ``root`` ("http://127.0.0.1:PORT"), ``api_url`` (root + "/v1"), ``sis_url`` (root + "/_sis/grades"),
  ``config`` (`SimConfig`), ``clock``, ``app`` (the aiohttp app), ``state`` (the `SimState`, for
  white-box checks), ``session`` (an `aiohttp.ClientSession` for the helpers and the test);
- ``auth_headers()`` -> ``{"x-api-key": ...}``; ``await token()`` -> a fresh bearer token;
- ``await scenario(body)`` -> the scenario in force (`POST /_sim/scenario`, asserts 200);
- ``await advance(body=None)`` -> the list of changes (`POST /_sim/advance`; None = one default step);
- ``await journal(since=None)`` -> the journalled `/v1` requests; ``await clear_journal()``;
- ``await truth()`` -> `GET /_sim/truth`; ``await sis_grades()`` -> `GET /_sis/grades` (``deliveries``,
  ``unique``, ``duplicates``, ``conflicts``);
- ``await deliveries()`` -> the webhook delivery log (`GET /_sim/deliveries`);
- ``await outstanding()`` -> how many webhook events are not yet settled (0: nothing more will be sent).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.core.clock import Clock, SystemClock
from service.simulator import SimConfig, build_simulator_app, make_sim_config
from service.simulator.app import SERVER_OPTIONS
from service.simulator.state import SIM, SimState


@pytest.fixture(autouse=True)
def _root_logger_as_found() -> Iterator[None]:
    """A test that runs a command in-process configures the root logger (its level, its handler): put it
    back, so that a later test's `caplog` sees warnings whatever LOG_LEVEL an earlier one ran with."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)


@dataclass
class SimHandle:
    """A running simulator and helpers to drive it."""

    root: str
    config: SimConfig
    clock: Clock
    app: web.Application
    session: aiohttp.ClientSession
    server: TestServer

    @property
    def api_url(self) -> str:
        """The WISEflow base URL of this simulator (what `WISEFLOW_API_URL` would be)."""
        return self.root + "/v1"

    @property
    def sis_url(self) -> str:
        """The fake SIS endpoint (what `SYNC_SINK_URL` would be)."""
        return self.root + "/_sis/grades"

    @property
    def state(self) -> SimState:
        """The simulator's state, for white-box assertions."""
        return self.app[SIM]

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate with the static API key."""
        return {"x-api-key": self.config.api_key}

    async def token(self) -> str:
        """A fresh OAuth bearer token for the configured client."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
        }
        body = await self._call("POST", "/v1/oauth2/token", data=form)
        return str(body["access_token"])

    async def scenario(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a scenario; returns what is in force."""
        result: dict[str, Any] = await self._call("POST", "/_sim/scenario", json=body)
        return result

    async def advance(self, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Change the world (None: one default step); returns the changes made."""
        result = await self._call("POST", "/_sim/advance", json=body or {})
        changes: list[dict[str, Any]] = result["changes"]
        return changes

    async def journal(self, since: float | None = None) -> list[dict[str, Any]]:
        """The journalled `/v1` requests, optionally only those at or after `since` (Unix seconds)."""
        params = {} if since is None else {"since": repr(since)}
        result = await self._call("GET", "/_sim/journal", params=params)
        requests: list[dict[str, Any]] = result["requests"]
        return requests

    async def clear_journal(self) -> None:
        """Forget every journalled request."""
        await self._call("DELETE", "/_sim/journal")

    async def truth(self) -> dict[str, Any]:
        """The world as it is."""
        result: dict[str, Any] = await self._call("GET", "/_sim/truth")
        return result

    async def sis_grades(self) -> dict[str, Any]:
        """What the fake SIS received: deliveries, unique keys, duplicates."""
        result: dict[str, Any] = await self._call("GET", "/_sis/grades")
        return result

    async def sis_scenario(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set how the fake SIS answers deliveries; returns what is in force."""
        result: dict[str, Any] = await self._call("POST", "/_sis/scenario", json=body)
        return result

    async def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt (and loss) so far."""
        result = await self._call("GET", "/_sim/deliveries")
        log: list[dict[str, Any]] = result["deliveries"]
        return log

    async def outstanding(self) -> int:
        """Webhook events queued, in flight or awaiting a redelivery (0: nothing more will be sent)."""
        result = await self._call("GET", "/_sim/deliveries")
        return int(result["outstanding"])

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.root + path, **kwargs) as resp:
            body = await resp.json()
            assert resp.status == 200, f"{method} {path} -> {resp.status}: {body}"
            return body

    async def close(self) -> None:
        """Stop the simulator and close the session."""
        await self.session.close()
        await self.server.close()


SimFactory = Callable[..., Awaitable[SimHandle]]


@pytest.fixture
async def make_simulator() -> AsyncIterator[SimFactory]:
    """A factory starting simulators with config overrides; all are stopped at teardown."""
    handles: list[SimHandle] = []

    async def start(clock: Clock | None = None, profile: str = "calm", **overrides: Any) -> SimHandle:
        config = make_sim_config(profile, env={}, **overrides)
        the_clock = clock or SystemClock()
        app = build_simulator_app(config, the_clock)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server(**SERVER_OPTIONS)
        handle = SimHandle(
            root=f"http://127.0.0.1:{server.port}",
            config=config,
            clock=the_clock,
            app=app,
            session=aiohttp.ClientSession(),
            server=server,
        )
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.close()


@pytest.fixture
async def simulator(make_simulator: SimFactory) -> SimHandle:
    """A calm simulator with the default config on the real clock."""
    return await make_simulator()
