"""An in-process OTLP/HTTP trace receiver on loopback, for tests that follow spans out of the process."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived: ids in hex, kind by name, attributes and links decoded."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace_id, span_id)


@dataclass
class Receiver:
    """A minimal OTLP/HTTP trace receiver: keeps every raw body and every decoded request."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    hang: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.hang is not None:
            await self.hang.wait()
        self.bodies.append(body)
        self.requests.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def spans(self) -> dict[str, dict[str, Any]]:
        """Every received span by name: its attributes, event attributes and resource attributes."""
        out: dict[str, dict[str, Any]] = {}
        for req in self.requests:
            for rs in req.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out[span.name] = {
                            "attributes": {kv.key: value_of(kv.value) for kv in span.attributes},
                            "events": {
                                e.name: {kv.key: value_of(kv.value) for kv in e.attributes} for e in span.events
                            },
                            "resource": resource,
                        }
        return out

    def all_spans(self) -> list[ReceivedSpan]:
        """Every received span, in arrival order."""
        return [
            ReceivedSpan(
                name=span.name,
                kind=ProtoSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                attributes={kv.key: value_of(kv.value) for kv in span.attributes},
                links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
            )
            for req in self.requests
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]


def value_of(v: AnyValue) -> Any:
    """A decoded attribute value."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """An OTLP receiver listening on 127.0.0.1, port chosen by the OS."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    if rec.hang is not None:
        rec.hang.set()
    await runner.cleanup()
