"""What happens around every simulator request: errors as envelopes, and the `/v1` gauntlet.

For `/v1` the order is WISEflow's as a client sees it: added latency, a maintenance window (503 with
`Retry-After`, or a connection closed without an answer), an unknown path or method (404, 405, before any
credential check, as a gateway that matches routes first), credentials (401), a 429 storm, the
per-credential windows (429 with `Retry-After`), random 5xx, then the handler. The token endpoint has no
credentials to check: a storm or a random 5xx reaches it right after maintenance. Every answer to an
identified credential carries the `RateLimit-*` and `X-RateLimit-Second-*`/`-Minute-*` headers. Every
`/v1` request is journalled with its credentials masked; every response of the app carries a fresh
`X-Trace-Id`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from service.core.redact import MASK, is_sensitive
from service.simulator.auth import identify
from service.simulator.http import ApiProblem, error_body, json_response, problem_response
from service.simulator.ratewindow import Verdict
from service.simulator.state import SIM, SimState

log = logging.getLogger(__name__)
CLIENT: Final = web.RequestKey("sim_client", str)
TRACE_ID: Final = web.RequestKey("sim_trace_id", str)
TOKEN_PATH: Final = "/v1/oauth2/token"  # noqa: S105 - a path, not a secret


def rate_headers(verdict: Verdict) -> dict[str, str]:
    """WISEflow's rate-limit headers: the binding window as `RateLimit-*`, and both windows by name."""
    headers: dict[str, str] = {}
    for prefix, window in (
        ("RateLimit", verdict.binding),
        ("X-RateLimit-Second", verdict.second),
        ("X-RateLimit-Minute", verdict.minute),
    ):
        headers[f"{prefix}-Limit"] = str(window.limit)
        headers[f"{prefix}-Remaining"] = str(window.remaining)
        headers[f"{prefix}-Reset"] = str(window.reset)
    return headers


def to_response(exc: Exception) -> web.Response:
    """The error envelope of anything a handler raised; unexpected errors become a 500 without a trace."""
    if isinstance(exc, ApiProblem):
        return problem_response(exc)
    if isinstance(exc, web.HTTPException):
        status = exc.status if exc.status >= 400 else 500
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return json_response(error_body(status, exc.reason, "http_error"), status, headers)
    log.exception("simulator handler failed", extra={"event": "sim.handler_error"})
    return json_response(error_body(500, "internal server error", "internal_error"), 500)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: no request ever sees a stack trace, only the error envelope."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # WISEflow's requests are small JSON or forms; a compressed body is refused before anything decodes it.
        refused = to_response(
            ApiProblem(415, "compressed request bodies are not accepted", "unsupported_encoding")
        )
        refused.force_close()  # no keep-alive: aiohttp would otherwise try to decode the body to drain it
        if request.path.startswith("/v1/"):
            sim = request.app[SIM]
            _journal(sim, request, refused.status, sim.clock.wall())
        return refused
    try:
        return await handler(request)
    except web.RequestPayloadError:
        return to_response(ApiProblem(400, "the request body could not be read", "invalid_body"))
    except _Refused:
        # The transport is already closed: this answer is never written, nobody sees it.
        return web.Response(status=503)
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes an answer
        return to_response(exc)


@web.middleware
async def v1_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The `/v1` gauntlet (see the module docstring) and the journal."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    sim = request.app[SIM]
    started = sim.clock.wall()
    try:
        response = await _gauntlet(request, handler, sim)
    except _Refused:
        _journal(sim, request, 0, started)
        raise
    except Exception as exc:  # noqa: BLE001 - journal the answer whatever the error was
        response = to_response(exc)
    _journal(sim, request, response.status, started, response.headers.get("Retry-After"))
    return response


class _Refused(Exception):
    """The maintenance window refuses connections: the transport is closed, there is no answer."""


async def _gauntlet(request: web.Request, handler: Handler, sim: SimState) -> web.StreamResponse:
    scenario = sim.scenario
    if scenario.latency_ms > 0:
        await asyncio.sleep(scenario.latency_ms / 1000)
    now = sim.clock.monotonic()
    if scenario.in_maintenance(now):
        if scenario.maintenance_mode == "refuse":
            _refuse(request)
        retry = {"Retry-After": str(scenario.maintenance_retry_after)}
        raise ApiProblem(503, "WISEflow is down for scheduled maintenance", "maintenance", retry)
    unrouted = getattr(request.match_info, "http_exception", None)
    if unrouted is not None:
        # No such path or method: the gateway answers before any credential check or counting.
        raise unrouted
    if request.path == TOKEN_PATH:
        _storm_or_fault(sim, now, {})
        return await handler(request)
    credential = identify(request.headers, sim.config, sim.tokens, now)
    request[CLIENT] = credential
    if scenario.in_storm(now):
        # A storm is the server refusing everyone: its headers say the windows are spent until Retry-After.
        _storm_or_fault(sim, now, storm_headers(sim, scenario.storm_retry_after))
    verdict = sim.windows.admit(credential, now)
    headers = rate_headers(verdict)
    if not verdict.allowed:
        headers["Retry-After"] = str(verdict.retry_after)
        raise ApiProblem(429, "rate limit exceeded for these credentials", "rate_limited", headers)
    # Counted requests carry the rate headers whatever the answer: a simulated 5xx, a 404, a 405 or a 200.
    try:
        _storm_or_fault(sim, now, headers)
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every answer of a counted request gets the headers
        response = to_response(exc)
    response.headers.update(headers)
    return response


def storm_headers(sim: SimState, retry_after: int) -> dict[str, str]:
    """The rate headers of a storm's 429: every window spent until `retry_after` seconds from now."""
    limits = sim.scenario
    headers: dict[str, str] = {}
    for prefix, limit in (
        ("RateLimit", limits.rate_per_second),
        ("X-RateLimit-Second", limits.rate_per_second),
        ("X-RateLimit-Minute", limits.rate_per_minute),
    ):
        headers.update(
            {f"{prefix}-Limit": str(limit), f"{prefix}-Remaining": "0", f"{prefix}-Reset": str(retry_after)}
        )
    return headers


def _storm_or_fault(sim: SimState, now: float, headers: dict[str, str]) -> None:
    """Raise the 429 of a storm, or a random 5xx at the scenario's error rate, carrying `headers`."""
    scenario = sim.scenario
    if scenario.in_storm(now):
        retry = {**headers, "Retry-After": str(scenario.storm_retry_after)}
        raise ApiProblem(429, "too many requests", "rate_limited", retry)
    if scenario.error_rate > 0 and sim.fault_rng.random() < scenario.error_rate:
        raise ApiProblem(500, "internal server error (simulated)", "internal_error", headers)


def _refuse(request: web.Request) -> None:
    """Close the connection without an answer, as a host in maintenance that refuses connections."""
    if request.transport is not None:
        request.transport.close()
    raise _Refused


def _journal(
    sim: SimState, request: web.Request, status: int, started: float, retry_after: str | None = None
) -> None:
    """One journal line: credentials and cookies masked, never a secret."""
    # str(): header names are case-insensitive `istr`s, which JSON encoders refuse as keys.
    headers = {str(k): (MASK if is_sensitive(k) else v) for k, v in request.headers.items()}
    sim.journal.append(
        {
            "time": started,
            # When the answer was ready: a client cannot know of a 429 or a 503 before this moment.
            "answered": sim.clock.wall(),
            "method": request.method,
            "path": request.path,
            # A client may put a secret in the query (client_secret, access_token): masked like a header.
            "query": {str(k): (MASK if is_sensitive(k) else v) for k, v in request.query.items()},
            "status": status,
            "headers": headers,
            "client": request.get(CLIENT),
            # The id the answer carried, so a client's log line and this journal line can be matched.
            "traceId": trace_id(request),
            # The answer's Retry-After (429, 503), so a test can check nothing came back inside it.
            "retryAfter": retry_after,
        }
    )


def trace_id(request: web.Request) -> str:
    """The request's `X-Trace-Id`: drawn fresh the first time it is asked for, then the same."""
    if TRACE_ID not in request:
        request[TRACE_ID] = str(uuid.uuid4())
    return request[TRACE_ID]


async def trace_id_on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every response carries a fresh `X-Trace-Id`, as WISEflow's do (the journal line has the same one)."""
    response.headers["X-Trace-Id"] = trace_id(request)
