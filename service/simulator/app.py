"""The simulator's app factory: `build_simulator_app(config, clock)` wires state, routes and background tasks.

The webhook dispatcher and, in the chaos profile, the background clock that advances the world every
`advance_interval` seconds are owned by a cleanup context: started with the app, cancelled and awaited
when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from aiohttp import web

from service.core.clock import Clock, SystemClock
from service.simulator import api, api_webhooks, control
from service.simulator.advance import DEFAULT_STEP
from service.simulator.config import SimConfig
from service.simulator.middleware import errors_middleware, trace_id_on_prepare, v1_middleware
from service.simulator.state import SIM, SimState

log = logging.getLogger(__name__)
# Options for the runner or test server of the simulator. No automatic decompression: the errors
# middleware refuses every Content-Encoding with a 415 envelope, and aiohttp's parser would otherwise
# answer an encoding it cannot decode (br, zstd) itself, in plain text and without an X-Trace-Id.
SERVER_OPTIONS: Final[Mapping[str, Any]] = {"auto_decompress": False}


def build_simulator_app(config: SimConfig, clock: Clock | None = None) -> web.Application:
    """A ready-to-run aiohttp app simulating WISEflow (and the fake SIS) for `config`."""
    app = web.Application(middlewares=[errors_middleware, v1_middleware])
    app[SIM] = SimState(config, clock or SystemClock())
    api.add_routes(app)
    api_webhooks.add_routes(app)
    control.add_routes(app)
    app.on_response_prepare.append(trace_id_on_prepare)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Run the webhook dispatcher, and the chaos clock when the profile asks for it."""
    sim = app[SIM]
    await sim.dispatcher.start()
    ticker = asyncio.create_task(_tick(sim)) if sim.config.background_advance else None
    try:
        yield
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await sim.dispatcher.stop()


async def _tick(sim: SimState) -> None:
    """The chaos profile's clock: one default step every `advance_interval` seconds, unless frozen."""
    while True:
        await asyncio.sleep(sim.config.advance_interval)
        if sim.scenario.frozen:
            continue
        changes = sim.advance(dict(DEFAULT_STEP))
        log.info("simulator advanced", extra={"event": "sim.advance", "changes": len(changes)})
