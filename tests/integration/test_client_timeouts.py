"""Read timeouts, the per-call deadline and the structured request logs, against a slow simulator."""

from __future__ import annotations

import logging

import pytest

from service.core.breaker import BreakerPolicy
from service.errors import ApiError, ApiUnavailable
from tests.conftest import SimHandle
from tests.integration.client_support import Recorder, make_client

LOG_FIELDS = ("x_trace_id", "method", "path", "status", "duration_ms", "attempt")


async def test_timeouts_are_retried_up_to_the_attempt_limit(simulator: SimHandle) -> None:
    """Answers slower than the read timeout: 5 attempts, then ApiUnavailable with no status, attempt 5."""
    recorder = Recorder()
    patient = BreakerPolicy(failure_threshold=10)
    async with make_client(simulator.api_url, recorder, patient, read_timeout=0.1) as client:
        await client.license_info()
        await simulator.scenario({"latency_ms": 400})
        with pytest.raises(ApiUnavailable) as error:
            await client.license_info()
    attempts = [(r.status, r.attempt) for r in recorder.records if r.path == "/license/info"][1:]
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
    """DEBUG per request, WARNING per failure, each with trace id, method, path, status, duration, attempt."""
    caplog.set_level(logging.DEBUG, logger="service.adapters.wiseflow")
    async with make_client(simulator.api_url) as client:
        await client.license_info()
        with pytest.raises(ApiError):
            await client.get_flow(999999)
    tokens = list(simulator.state.tokens._tokens)  # white-box: the token the simulator issued
    requests = [r for r in caplog.records if getattr(r, "event", None) == "wiseflow.request"]
    levels = [(r.levelname, getattr(r, "path", None), getattr(r, "status", None)) for r in requests]
    assert levels == [
        ("DEBUG", "/oauth2/token", 200),
        ("DEBUG", "/license/info", 200),
        ("WARNING", "/flow/999999", 404),
    ]
    assert all(all(hasattr(r, name) for name in LOG_FIELDS) and r.x_trace_id for r in requests)
    assert tokens
    assert not [t for t in tokens if t in caplog.text or any(t in str(vars(r)) for r in caplog.records)]
