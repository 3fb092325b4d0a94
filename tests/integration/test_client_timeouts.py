"""Read timeouts, the per-call deadline and the structured request logs, against a slow simulator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
from aiohttp import web

from service.adapters.wiseflow import transport
from service.core.breaker import BreakerPolicy
from service.errors import ApiError, ApiUnavailable, CircuitOpen
from tests.conftest import SimHandle
from tests.integration.client_support import Recorder, make_client, misbehaving_server

LOG_FIELDS = ("x_trace_id", "method", "route", "path", "status", "duration_ms", "attempt")


async def test_timeouts_are_retried_up_to_the_attempt_limit(simulator: SimHandle) -> None:
    """Answers slower than the read timeout: 5 attempts, then ApiUnavailable with no status, attempt 5."""
    recorder = Recorder()
    patient = BreakerPolicy(failure_threshold=10)
    async with make_client(simulator.api_url, recorder, patient, read_timeout=0.1) as client:
        # The first call takes the token; on a loaded machine it may itself need a retry (a stall past
        # the 0.1 s read timeout), so only the records of the slow call are judged.
        await client.license_info()
        before = len(recorder.records)
        await simulator.scenario({"latency_ms": 400})
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
    attempts = [(r.status, r.attempt) for r in recorder.records[before:]]
    assert (error.value.status, error.value.attempt) == (None, 5)
    assert attempts == [(None, n) for n in range(1, 6)]


async def test_the_call_deadline_ends_a_call_that_keeps_failing(simulator: SimHandle) -> None:
    """A 0.5 s call deadline cuts the retries short: the call ends before its 5 attempts."""
    async with make_client(simulator.api_url, read_timeout=0.2, call_deadline=0.5, retry_base=0.2) as client:
        await client.license_info()
        await simulator.scenario({"latency_ms": 1000})
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
    assert error.value.attempt < 5


async def test_requests_are_logged_as_structured_fields_without_the_token(
    simulator: SimHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """INFO per request, WARNING per failure, each with trace id, method, route, status, duration, attempt."""
    caplog.set_level(logging.INFO, logger="service.adapters.wiseflow")
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        with pytest.raises(ApiError):
            await client.get_flow(999999)
    tokens = list(simulator.state.tokens._tokens)  # white-box: the token the simulator issued
    requests = [r for r in caplog.records if getattr(r, "event", None) == "wiseflow.request"]
    levels = [(r.levelname, getattr(r, "route", None), getattr(r, "status", None)) for r in requests]
    assert levels == [
        ("INFO", "/oauth2/token", 200),
        ("INFO", "/license/info", 200),
        ("WARNING", "/flow/{id}", 404),
    ]
    assert all(all(hasattr(r, name) for name in LOG_FIELDS) and r.x_trace_id for r in requests)
    assert tokens
    assert not [t for t in tokens if t in caplog.text or any(t in str(vars(r)) for r in caplog.records)]


async def test_an_endless_answer_is_cut_off_at_the_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 that streams without end: ApiError once the limit is passed, one request, no retry."""
    monkeypatch.setattr(transport, "MAX_BODY", 256 * 1024)
    sent: list[int] = []

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):  # 64 MiB if nobody stopped reading
                await response.write(b"x" * 65536)
                sent.append(1)
        return response

    async with misbehaving_server({("GET", "/v1/license/info"): flood}) as url, make_client(url) as client:
        with pytest.raises(ApiError, match="exceeded") as error:
            await client.license_info()
    assert (error.value.status, error.value.attempt) == (200, 1)
    assert len(sent) < 1000


async def test_a_server_that_accepts_and_never_answers_times_out() -> None:
    """A listener that never writes a byte: each attempt ends at the read timeout, then ApiUnavailable."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open and say nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = Recorder()
    patient = BreakerPolicy(failure_threshold=10)
    try:
        async with make_client(f"http://127.0.0.1:{port}/v1", recorder, patient, read_timeout=0.1) as client:
            with pytest.raises(ApiUnavailable) as error:
                await client.license_info()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert (error.value.status, error.value.attempt, error.value.path) == (None, 5, "/oauth2/token")
    assert [(r.status, r.attempt) for r in recorder.records] == [(None, n) for n in range(1, 6)]


async def test_a_refused_connection_is_retried_then_opens_the_breaker() -> None:
    """Nothing listens: five attempts with backoff, ApiUnavailable, and the default breaker is open."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connections to it are refused
    recorder = Recorder()
    async with make_client(f"http://127.0.0.1:{port}/v1", recorder, BreakerPolicy()) as client:
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
        with pytest.raises(CircuitOpen):
            await client.license_info()
    assert (error.value.status, error.value.attempt) == (None, 5)
    assert len(recorder.records) == 5
    assert [t.reason for t in recorder.transitions] == ["5 consecutive failures, last: connection failed"]
