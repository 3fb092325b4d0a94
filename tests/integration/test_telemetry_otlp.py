"""Tracing end to end: setup_tracing exports over real OTLP/HTTP to an in-process receiver on loopback."""

from __future__ import annotations

import asyncio

from service import __version__
from service.adapters.telemetry import X_TRACE_ID_ATTRIBUTE, setup_tracing
from service.core.redact import MASK
from service.settings import Settings
from tests.otlp import Receiver, receiver

__all__ = ["receiver"]  # the fixture, imported for this module's tests


async def test_span_arrives_with_name_attributes_and_resource(receiver: Receiver) -> None:
    """A span made after setup_tracing reaches the OTLP endpoint with its name, attributes and resource."""
    settings = Settings(otel_endpoint=receiver.url, otel_service_name="wfs-test")
    handle = setup_tracing(settings, env={}, set_global=False)
    with handle.tracer("test").start_as_current_span("GET /flows") as span:
        span.set_attribute(X_TRACE_ID_ATTRIBUTE, "trace-abc-123")
        span.set_attribute("http.response.status_code", 200)
    assert await handle.aclose(5.0)

    received = receiver.spans()["GET /flows"]
    assert received["attributes"][X_TRACE_ID_ATTRIBUTE] == "trace-abc-123"
    assert received["attributes"]["http.response.status_code"] == 200
    assert received["resource"]["service.name"] == "wfs-test"
    assert __version__ == received["resource"]["service.version"]


async def test_sensitive_attributes_are_masked_before_leaving_the_process(receiver: Receiver) -> None:
    """Secrets set on a span or its events arrive as *** and their values are nowhere in the bytes sent."""
    handle = setup_tracing(Settings(otel_endpoint=receiver.url), env={}, set_global=False)
    with handle.tracer("test").start_as_current_span("POST /oauth2/token") as span:
        span.set_attribute("wiseflow.client_secret", "s3cr3t-value")
        span.set_attribute("http.request.header.authorization", "Bearer tok-987")
        span.set_attribute("user.email", "student@example.edu")
        span.set_attribute("error.detail", "refused Bearer tok-654 at the gate")
        span.add_event("retry", {"access_token": "tok-321", "attempt": 2})
    assert await handle.aclose(5.0)

    received = receiver.spans()["POST /oauth2/token"]
    attributes = received["attributes"]
    assert attributes["wiseflow.client_secret"] == MASK
    assert attributes["http.request.header.authorization"] == MASK
    assert attributes["user.email"] == MASK
    assert f"refused Bearer {MASK} at the gate" == attributes["error.detail"]
    assert received["events"]["retry"] == {"access_token": MASK, "attempt": 2}
    raw = b"".join(receiver.bodies)
    for secret in (b"s3cr3t-value", b"tok-987", b"student@example.edu", b"tok-654", b"tok-321"):
        assert secret not in raw


async def test_always_off_sampler_exports_nothing(receiver: Receiver) -> None:
    """OTEL_TRACES_SAMPLER=always_off: spans are made but none is sent to the collector."""
    settings = Settings(otel_endpoint=receiver.url, otel_sampler="always_off")
    handle = setup_tracing(settings, env={}, set_global=False)
    with handle.tracer("test").start_as_current_span("unsampled"):
        pass
    assert await handle.aclose(5.0)
    assert receiver.spans() == {}


async def test_shutdown_gives_up_after_its_bound_when_the_collector_hangs(receiver: Receiver) -> None:
    """A collector that never answers cannot hold up shutdown: it reports False after its bound."""
    receiver.hang = asyncio.Event()
    handle = setup_tracing(Settings(otel_endpoint=receiver.url), env={}, set_global=False)
    with handle.tracer("test").start_as_current_span("stuck"):
        pass
    assert not await handle.aclose(0.2)
    receiver.hang.set()
