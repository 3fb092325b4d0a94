"""Pagination, envelopes and the hooks (request records, calls counter, spans) against the simulator."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.wiseflow import WiseflowClient
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import Recorder, api_requests, client_settings, make_client


async def test_participants_are_paged_at_the_maximum_limit_until_the_total(make_simulator: SimFactory) -> None:
    """230 participants: three pages of limit 100 (offsets 0, 100, 200), every participant once, in order."""
    sim = await make_simulator(flows=2, participants=230)
    flow_id = (await sim.truth())["flows"][0]["flow"]["id"]
    async with make_client(sim.api_url) as client:
        got = [p async for p in client.iter_participants(flow_id)]
    truth = next(f for f in (await sim.truth())["flows"] if f["flow"]["id"] == flow_id)
    queries = [r["query"] for r in api_requests(await sim.journal())]
    assert got == truth["participants"]
    assert queries == [{"offset": str(o), "limit": "100"} for o in (0, 100, 200)]


async def test_flow_search_and_bare_arrays(simulator: SimHandle) -> None:
    """Every flow comes out of the search (limit 100); the bare-array assessments are read as they are."""
    truth = await simulator.truth()
    async with make_client(simulator.api_url) as client:
        flows = [f async for f in client.search_flows()]
        first = flows[0]["flowId"]
        assessments = await client.get_assessments(first)
        flow = await client.get_flow(first)
    expected = next(f for f in truth["flows"] if f["flow"]["id"] == first)
    assert sorted(f["flowId"] for f in flows) == sorted(f["flow"]["id"] for f in truth["flows"])
    assert (assessments, flow) == (expected["assessments"], expected["flow"])


async def test_participation_events_page_in_the_body(simulator: SimHandle) -> None:
    """POST /participation-events carries its window and pagination (limit 1000) in the body."""
    async with make_client(simulator.api_url) as client:
        events = [e async for e in client.iter_participation_events(0, 2**31 - 1)]
    searches = [r for r in api_requests(await simulator.journal()) if r["path"] == "/v1/participation-events"]
    assert isinstance(events, list)
    assert len(searches) == max(1, -(-len(events) // 1000))


async def test_hooks_record_every_request_and_spans_carry_the_trace_id(simulator: SimHandle) -> None:
    """on_request sees each request (token included), `calls` counts them, each has a span with X-Trace-Id."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder()
    settings = client_settings(simulator.api_url)
    async with WiseflowClient(
        settings, on_request=recorder.records.append, tracer=provider.get_tracer("test")
    ) as client:
        await client.license_info()
        await client.get_flow((await simulator.truth())["flows"][0]["flow"]["id"])
        calls = client.calls
    spans = exporter.get_finished_spans()
    journal = await simulator.journal()
    attributes = [dict(s.attributes or {}) for s in spans]
    assert [(r.method, r.path, r.status, r.attempt) for r in recorder.records] == [
        ("POST", "/oauth2/token", 200, 1),
        ("GET", "/license/info", 200, 1),
        ("GET", recorder.records[2].path, 200, 1),
    ]
    assert calls == len(journal) == 3
    assert [s.name for s in spans] == [
        "WISEflow POST /oauth2/token",
        "WISEflow GET /license/info",
        "WISEflow GET /flow/{id}",
    ]
    assert [a["url.path"] for a in attributes] == [r["path"] for r in journal]
    assert all(a["wiseflow.trace_id"] and a["http.response.status_code"] == 200 for a in attributes)
    assert [a["wiseflow.trace_id"] for a in attributes] == [r.trace_id for r in recorder.records]
