"""The server span of every request (except probes), over a real aiohttp server and an in-memory exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from service.adapters.ops_http import tracing_middleware
from service.adapters.telemetry import WebhookRatioSampler, receipt_sampling, setup_tracing
from service.settings import Settings


async def _ok(request: web.Request) -> web.Response:
    # The handler runs inside the request's span: log lines written here carry its trace id.
    return web.Response(text=format(get_current_span().get_span_context().span_id, "016x"))


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def _answer_as_asked(request: web.Request) -> web.Response:
    # A webhook "receiver" that answers the status the test asks for, like a refused delivery would.
    return web.Response(status=int(request.query.get("status", "200")))


async def _client(
    provider: TracerProvider, answering: bool = False
) -> TestClient[web.Request, web.Application]:
    tracer = provider.get_tracer("test")
    app = web.Application(middlewares=[tracing_middleware(tracer, receipt_sampling(provider))])
    app.router.add_post("/webhooks/wiseflow", _answer_as_asked if answering else _ok)
    app.router.add_get("/livez", _ok)
    app.router.add_get("/broken", _broken)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    return client


@pytest.fixture
async def traced() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await _client(provider)
    try:
        yield client, exporter
    finally:
        await client.close()


async def test_a_request_gets_one_server_span_named_by_its_route_and_current_in_the_handler(
    traced: tuple[TestClient[web.Request, web.Application], InMemorySpanExporter],
) -> None:
    """Two webhook posts: two SERVER spans with method, route and status; the handler sees its span."""
    client, exporter = traced
    seen = [await (await client.post("/webhooks/wiseflow", data=b"{}")).text() for _ in range(2)]
    spans = exporter.get_finished_spans()
    assert [(s.name, s.kind) for s in spans] == [("POST /webhooks/wiseflow", SpanKind.SERVER)] * 2
    assert [dict(s.attributes or {}) for s in spans] == [
        {"http.request.method": "POST", "http.route": "/webhooks/wiseflow", "http.response.status_code": 200}
    ] * 2
    assert seen == [format(s.context.span_id, "016x") for s in spans]


async def test_probes_get_no_span_and_failures_are_recorded(
    traced: tuple[TestClient[web.Request, web.Application], InMemorySpanExporter],
) -> None:
    """/livez has no span; a handler that raises and an unknown path end their spans with status ERROR."""
    client, exporter = traced
    assert (await client.get("/livez")).status == 200
    assert (await client.get("/broken")).status == 500
    assert (await client.get("/nowhere")).status == 404
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["GET /broken", "GET unmatched"]
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.ERROR]
    assert [e.name for e in spans[0].events] == ["exception"]


async def test_a_dropped_span_is_not_exported_and_the_request_is_answered() -> None:
    """With a sampler that drops every span, requests are answered and nothing is exported."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await _client(provider)
    try:
        assert (await client.post("/webhooks/wiseflow", data=b"{}")).status == 200
    finally:
        await client.close()
    assert exporter.get_finished_spans() == ()


async def test_the_default_sampler_drops_accepted_receipts_and_keeps_every_failed_one() -> None:
    """Receipt ratio 0: two accepted webhooks leave no span; a 401 and a 503 each leave one; /status one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=WebhookRatioSampler(0.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await _client(provider, answering=True)
    try:
        for status in (200, 200, 401, 503):
            assert (await client.post(f"/webhooks/wiseflow?status={status}", data=b"{}")).status == status
        assert (await client.get("/broken")).status == 500
    finally:
        await client.close()
    spans = exporter.get_finished_spans()
    assert [(s.name, (s.attributes or {}).get("http.response.status_code")) for s in spans] == [
        ("POST /webhooks/wiseflow", 401),
        ("POST /webhooks/wiseflow", 503),
        ("GET /broken", None),
    ]
    assert all(s.kind is SpanKind.SERVER and s.end_time is not None for s in spans)
    assert spans[0].start_time is not None
    assert spans[0].end_time is not None
    assert spans[0].start_time < spans[0].end_time  # started when the request was, not when it failed


@pytest.mark.parametrize("ratio", ["0", "1"])
async def test_receipts_sampled_early_as_the_service_sets_tracing_up(ratio: str) -> None:
    """The provider `setup_tracing` builds (receipts' sampling decided before a span exists): at ratio 1
    each accepted receipt has its span, current in the handler; at 0 none has; a refused one always has."""
    exporter = InMemorySpanExporter()
    handle = setup_tracing(
        Settings(), env={"OTEL_TRACES_SAMPLER_ARG": ratio}, exporter=exporter, set_global=False
    )
    assert receipt_sampling(handle.provider) is not None
    client = await _client(handle.provider, answering=True)
    try:
        for status in (200, 200, 401):
            assert (await client.post(f"/webhooks/wiseflow?status={status}", data=b"{}")).status == status
    finally:
        await client.close()
    spans = exporter.get_finished_spans()
    statuses = [(s.attributes or {}).get("http.response.status_code") for s in spans]
    assert statuses == ([200, 200, 401] if ratio == "1" else [401])
    assert all(s.kind is SpanKind.SERVER and s.name == "POST /webhooks/wiseflow" for s in spans)


async def test_a_sampled_receipt_span_is_current_in_the_handler() -> None:
    """Ratio 1 through the early path: the handler sees the receipt's span as current."""
    exporter = InMemorySpanExporter()
    handle = setup_tracing(
        Settings(), env={"OTEL_TRACES_SAMPLER_ARG": "1"}, exporter=exporter, set_global=False
    )
    client = await _client(handle.provider)
    try:
        seen = await (await client.post("/webhooks/wiseflow", data=b"{}")).text()
    finally:
        await client.close()
    (span,) = exporter.get_finished_spans()
    assert seen == format(span.context.span_id, "016x")
