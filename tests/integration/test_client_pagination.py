"""Pagination, envelopes and the hooks (request records, calls counter, spans) against the simulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.wiseflow import WiseflowClient
from service.adapters.wiseflow.pagination import paginate
from service.core.ports import Json
from service.errors import ApiError
from tests.conftest import SimFactory, SimHandle
from tests.integration.client_support import (
    Recorder,
    api_requests,
    client_settings,
    make_client,
    misbehaving_server,
)


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


def page_server(answer: Callable[[int, int], Any]) -> Any:
    """A participants endpoint answering `answer(offset, call_number)` as the JSON body."""
    calls: list[int] = []

    async def participants(request: web.Request) -> web.Response:
        calls.append(int(request.query["offset"]))
        return web.json_response(answer(int(request.query["offset"]), len(calls)))

    return misbehaving_server({("GET", "/v1/flows/{flow}/participants"): participants}), calls


def full_page(start: int) -> list[dict[str, int]]:
    """A full page of 100 distinct participants."""
    return [{"id": start + i} for i in range(100)]


async def test_a_total_that_lies_ends_at_the_first_empty_page() -> None:
    """total 100000 but only 150 records: the iteration ends at the empty page after them."""
    server, calls = page_server(
        lambda offset, _n: {
            "success": True,
            "data": full_page(offset)[: max(0, 150 - offset)],
            "pagination": {"limit": 100, "offset": offset, "total": 100000},
        }
    )
    async with server as url, make_client(url) as client:
        got = [p["id"] async for p in client.iter_participants(1)]
    assert (got, calls) == (list(range(150)), [0, 100, 150])


async def test_a_server_that_ignores_the_offset_cannot_loop_forever() -> None:
    """The same full page at every offset, no total: an ApiError after the second page, not a loop."""
    server, calls = page_server(lambda _offset, _n: {"success": True, "data": full_page(0)})
    async with server as url, make_client(url) as client:
        got: list[Json] = []
        with pytest.raises(ApiError, match="repeated a page"):
            got.extend([p async for p in client.iter_participants(1)])
    assert calls == [0, 100]


async def test_a_server_cycling_between_pages_under_a_huge_total_is_stopped() -> None:
    """Pages A, B, A, ... with total 10**9: stopped when A comes back."""
    server, calls = page_server(
        lambda _offset, n: {"success": True, "data": full_page(1000 * (n % 2)), "pagination": {"total": 10**9}}
    )
    async with server as url, make_client(url) as client:
        with pytest.raises(ApiError, match="repeated a page"):
            [p async for p in client.iter_participants(1)]
    assert calls == [0, 100, 200]


async def test_a_carelessly_echoed_offset_does_not_stop_a_correct_server() -> None:
    """Envelopes always saying offset 0 while the pages do advance: every record, in order."""
    server, calls = page_server(
        lambda offset, _n: {
            "success": True,
            "data": full_page(offset)[: max(0, 250 - offset)],
            "pagination": {"limit": 100, "offset": 0, "total": 250},
        }
    )
    async with server as url, make_client(url) as client:
        got = [p["id"] async for p in client.iter_participants(1)]
    assert (got, calls) == (list(range(250)), [0, 100, 200])


async def test_endless_new_pages_without_a_total_stop_at_the_page_bound() -> None:
    """A server inventing new full pages forever is cut off at `max_pages`."""
    server, calls = page_server(lambda offset, _n: {"success": True, "data": full_page(offset)})
    async with server as url, make_client(url) as client:
        pages = paginate(client.request, "GET", "/flows/1/participants", 100, max_pages=3)
        with pytest.raises(ApiError, match="did not end within 3 pages"):
            [p async for p in pages]
    assert calls == [0, 100, 200]
