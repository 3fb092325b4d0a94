"""Maintenance windows and faults against the simulator: the breaker, retries of safe calls only, errors."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from service.core.breaker import State
from service.errors import ApiError, ApiUnavailable, CircuitOpen
from tests.conftest import SimHandle
from tests.integration.client_support import Recorder, api_requests, make_client, misbehaving_server
from tests.waiting import wait_until


async def test_maintenance_opens_the_breaker_nothing_is_sent_while_open_one_probe_closes_it(
    simulator: SimHandle,
) -> None:
    """503 + Retry-After opens at once; others fail fast unsent; a failed probe reopens; one probe closes it."""
    recorder = Recorder()
    async with make_client(simulator.api_url, recorder) as client:
        await client.license_info()
        # Open until a probe has failed too: a timed window could end before the first request on a busy box.
        await simulator.scenario({"maintenance": {"open": True, "retry_after": 1}})
        waiting = asyncio.create_task(client.license_info())  # safe: waits out Retry-After, then probes
        await wait_until(lambda: client.breaker.state is State.OPEN, what="the breaker open")
        with pytest.raises(CircuitOpen) as rejected:
            await client.get_flow(1)
        await wait_until(lambda: len(recorder.transitions) >= 3, what="a probe failed inside the window")
        await simulator.scenario({"maintenance": {"open": False}})
        await waiting
        state = client.breaker.state
    journal = api_requests(await simulator.journal())
    answers = [(r["time"], r["status"]) for r in journal]
    unavailable = [t for t, status in answers if status == 503]
    sent_while_open = [t for t, _ in answers for u in unavailable if u < t < u + 1.0]
    statuses = [status for _, status in answers]
    moves = [(t.source, t.target) for t in recorder.transitions]
    assert state is State.CLOSED
    assert rejected.value.retry_after > 0
    # How many probes fail depends on when the test closes the window; each one reopens the breaker.
    failed_probes = len(unavailable) - 1
    assert failed_probes >= 1
    assert statuses == [200, *[503] * len(unavailable), 200]
    assert sent_while_open == []
    assert moves == [
        (State.CLOSED, State.OPEN),
        *[(State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.OPEN)] * failed_probes,
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


async def test_refused_connections_open_the_breaker_after_consecutive_failures(simulator: SimHandle) -> None:
    """Connections closed without an answer count as failures; after 3 the circuit opens and sends nothing."""
    recorder = Recorder()
    async with make_client(simulator.api_url, recorder, retry_attempts=2) as client:
        await client.license_info()
        await simulator.scenario({"maintenance": {"seconds": 30, "mode": "refuse"}})
        with pytest.raises(ApiUnavailable) as first:
            await client.license_info()
        with pytest.raises(CircuitOpen):
            await client.license_info()
        sent = len(api_requests(await simulator.journal()))
        with pytest.raises(CircuitOpen):
            await client.license_info()
        after = len(api_requests(await simulator.journal()))
    attempts = [(r.status, r.attempt) for r in recorder.records if r.path == "/license/info"]
    assert (first.value.status, first.value.attempt) == (None, 2)
    assert attempts == [(200, 1), (None, 1), (None, 2), (None, 1)]
    assert recorder.transitions[0].reason == "3 consecutive failures, last: connection failed"
    assert after == sent


async def test_writes_are_never_retried(simulator: SimHandle) -> None:
    """A 503 on a GET is retried after its Retry-After; the same on POST /webhooks ends after one request."""
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        await simulator.scenario({"maintenance": {"open": True, "retry_after": 1}})
        read = asyncio.create_task(client.license_info())
        await wait_until(
            lambda: 503 in [r["status"] for r in api_requests(simulator.state.journal)], what="a 503"
        )
        await simulator.scenario({"maintenance": {"open": False}})
        await read
        await simulator.scenario({"maintenance": {"open": True, "retry_after": 1}})
        with pytest.raises(ApiUnavailable) as write:
            await client.create_webhook({"url": "https://example.org/hook", "events": ["FINAL_GRADE"]})
    journal = api_requests(await simulator.journal())
    assert [(r["method"], r["status"]) for r in journal] == [
        ("GET", 200),
        ("GET", 503),
        ("GET", 200),
        ("POST", 503),
    ]
    assert (write.value.retry_after, write.value.attempt) == (1.0, 1)


async def test_a_retry_after_beyond_the_maximum_ends_the_call_with_its_wait(simulator: SimHandle) -> None:
    """Maintenance with Retry-After 120 s > 60 s: ApiUnavailable carrying 120 s after one request."""
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        await simulator.scenario({"maintenance": {"seconds": 30, "retry_after": 120}})
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
    assert (error.value.retry_after, error.value.status, error.value.attempt) == (120.0, 503, 1)
    assert [r["status"] for r in api_requests(await simulator.journal())] == [200, 503]


async def test_errors_carry_method_path_status_trace_id_and_attempt(simulator: SimHandle) -> None:
    """A 404 is not retried and names GET /flow/999999, 404, the X-Trace-Id and attempt 1."""
    async with make_client(simulator.api_url) as client:
        with pytest.raises(ApiError) as error:
            await client.get_flow(999999)
    journal = api_requests(await simulator.journal())
    exc = error.value
    assert (exc.method, exc.path, exc.status, exc.attempt) == ("GET", "/flow/999999", 404, 1)
    assert exc.trace_id
    assert len(journal) == 1


async def test_half_open_lets_exactly_one_probe_through_among_fifty_callers() -> None:
    """After a 503 + Retry-After, 50 concurrent calls: one reaches the server, 49 fail fast, it closes."""
    arrivals: list[str] = []
    release_probe = asyncio.Event()

    async def maintenance(request: web.Request) -> web.Response:
        arrivals.append("test")
        return web.json_response({"success": False}, status=503, headers={"Retry-After": "0.3"})

    async def held_info(request: web.Request) -> web.Response:
        arrivals.append("info")
        await release_probe.wait()  # the probe stays out until the other 49 have asked
        return web.json_response({"success": True, "data": {"ok": True}})

    routes = {("POST", "/v1/webhooks/{id}/test"): maintenance, ("GET", "/v1/license/info"): held_info}
    recorder = Recorder()
    async with misbehaving_server(routes) as url, make_client(url, recorder) as client:
        with pytest.raises(ApiUnavailable):
            await client.test_webhook(1)
        await wait_until(lambda: client.breaker.retry_after() == 0, what="the open time over")
        calls = [asyncio.create_task(client.license_info()) for _ in range(50)]
        await wait_until(lambda: sum(c.done() for c in calls) == 49, what="49 callers turned away")
        release_probe.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        state = client.breaker.state
    outcomes = sorted(type(r).__name__ for r in results)
    assert arrivals == ["test", "info"]
    assert outcomes == ["CircuitOpen"] * 49 + ["dict"]
    assert state is State.CLOSED
    assert [(t.source, t.target) for t in recorder.transitions] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


@pytest.mark.parametrize(
    ("status", "headers"),
    [(429, {"Retry-After": "0"}), (408, {}), (502, {}), (503, {}), (504, {}), (None, {})],
)
async def test_no_write_is_retried_whatever_the_answer(status: int | None, headers: dict[str, str]) -> None:
    """POST /webhooks answered 429/408/502/503/504 or a dropped connection: one request, then the error."""
    arrivals: list[int] = []

    async def create(request: web.Request) -> web.Response:
        arrivals.append(1)
        if status is None:
            assert request.transport is not None
            request.transport.close()  # no answer at all
        return web.json_response({"success": False}, status=status or 500, headers=headers)

    async with misbehaving_server({("POST", "/v1/webhooks"): create}) as url, make_client(url) as client:
        with pytest.raises(ApiError) as error:
            await client.create_webhook({"url": "https://example.org/hook", "events": ["FINAL_GRADE"]})
    assert (len(arrivals), error.value.attempt, error.value.status) == (1, 1, status)
