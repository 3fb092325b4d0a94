"""The whole service (build_app) against the simulator: health endpoints, webhooks to SIS, diagnose."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.app import SERVICE, Service, build_app, close_service, open_service
from service.commands.diagnose import collect, render_text
from service.errors import StoreError
from service.settings import load_settings
from tests.conftest import SimFactory, SimHandle
from tests.waiting import wait_until


def service_env(sim: SimHandle, database: Path, **extra: str) -> dict[str, str]:
    """The environment of a service pointed at `sim`, delivering grades to its fake SIS."""
    env = {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "WISEFLOW_CLIENT_NAME": "wiseflow-sync-e2e",
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "SYNC_DATABASE": str(database),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_POLL_INTERVAL": "3600",
    }
    env.update(extra)
    return env


ServiceFactory = Callable[..., Awaitable[tuple[TestServer, Service]]]


@pytest.fixture
async def make_service() -> AsyncIterator[ServiceFactory]:
    """Starts services on loopback (loops running unless start=False); all stopped at teardown."""
    servers: list[TestServer] = []

    async def start(env: dict[str, str], *, start: bool = True) -> tuple[TestServer, Service]:
        server = TestServer(build_app(load_settings(env), start=start), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server, server.app[SERVICE]

    yield start
    for server in servers:
        await server.close()


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def test_health_endpoints_answer_without_wiseflow(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """/livez and /readyz answer 200 and /status reports the breaker even while WISEflow is in maintenance."""
    sim = await make_simulator()
    await sim.scenario({"maintenance": {"seconds": 60, "retry_after": 30}})
    server, _ = await make_service(service_env(sim, tmp_path / "s.sqlite3"), start=False)
    async with aiohttp.ClientSession() as session:
        assert (await get_json(session, str(server.make_url("/livez"))))[0] == 200
        status, body = await get_json(session, str(server.make_url("/readyz")))
        assert (status, body["status"]) == (200, "ready")
        status, body = await get_json(session, str(server.make_url("/status")))
        assert status == 200
        assert body["client_name"] == "wiseflow-sync-e2e"
        assert body["breaker"] == "closed"
        assert body["sink"] is True


async def test_readiness_fails_cleanly_when_the_database_is_gone(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A closed database makes /readyz 503 (not 500), while /livez stays 200."""
    sim = await make_simulator()
    server, service = await make_service(service_env(sim, tmp_path / "s.sqlite3"), start=False)
    await service.store.db.close()
    async with aiohttp.ClientSession() as session:
        status, body = await get_json(session, str(server.make_url("/readyz")))
        assert (status, body["status"]) == (503, "unavailable")
        assert (await get_json(session, str(server.make_url("/livez"))))[0] == 200


async def test_metrics_are_prometheus_text(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """/metrics renders the service's figures in the Prometheus text format after a sync."""
    sim = await make_simulator()
    server, service = await make_service(service_env(sim, tmp_path / "s.sqlite3"), start=False)
    summary = await service.runner.run()
    assert summary.outcome == "ok"
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/webhooks/wiseflow"), data=b"{}") as unsigned:
            assert unsigned.status == 401
        async with session.get(server.make_url("/metrics")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    sent = sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("wiseflow_api_requests_total{")
    )
    assert sent == service.client.calls
    assert "# TYPE wiseflow_breaker_open gauge" in text
    assert "# TYPE wiseflow_api_requests_total counter" in text
    assert "wiseflow_sync_runs_total 1.0\n" in text
    last_ok = [
        line for line in text.splitlines() if line.startswith("wiseflow_last_sync_success_timestamp_seconds ")
    ]
    assert len(last_ok) == 1
    assert float(last_ok[0].split()[1]) > 1.7e9
    assert 'wiseflow_outbox_rows{status="pending"}' in text
    assert 'status="deliveries"' not in text
    assert "wiseflow_webhook_ingest_duration_seconds_count 1.0\n" in text
    assert 'wiseflow_webhook_outcomes_total{outcome="rejected"} 1.0\n' in text
    assert 'wiseflow_sync_run_requests_count{outcome="ok"} 1.0\n' in text


async def test_a_webhook_grade_change_reaches_the_sis_once(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A grade changed in WISEflow arrives by signed webhook (duplicated) and reaches the SIS exactly once."""
    sim = await make_simulator(duplicate_rate=1.0, redelivery_interval=0.1)
    server, service = await make_service(service_env(sim, tmp_path / "s.sqlite3"))
    await wait_until(lambda: _has_run(service), what="the first run over and delivered")
    before = await sim.sis_grades()
    async with sim.session.post(
        sim.api_url + "/webhooks",
        json={"url": str(server.make_url("/webhooks/wiseflow")), "events": ["FINAL_GRADE", "ASSESSMENT"]},
        headers=sim.auth_headers(),
    ) as response:
        assert response.status == 201
    changes = await sim.advance({"grade_changes": 1})
    grade_changes = [c for c in changes if c["event"] in ("FINAL_GRADE", "ASSESSMENT")]
    assert grade_changes

    async def delivered() -> bool:
        return (await sim.sis_grades())["unique"] > before["unique"]

    await wait_until(delivered, what="the grade at the SIS")
    await wait_until(lambda: _figure(service, "duplicates"), what="a duplicate webhook counted")
    sis = await sim.sis_grades()
    assert sis["duplicates"] == 0
    assert sis["unique"] == before["unique"] + len({(c["flowId"], c["participantId"]) for c in grade_changes})


async def _has_run(service: Service) -> bool:
    """The first run is over and everything it queued has reached the SIS."""
    async with service.uow.read() as unit:
        pending = (await unit.inbox.counts()).get("pending", 0)
    if service.status.runs < 1 or pending:
        return False
    async with service.store.db.execute("SELECT COUNT(*) FROM outbox WHERE status != 'delivered'") as cursor:
        row = await cursor.fetchone()
    return row is not None and row[0] == 0


async def _figure(service: Service, name: str) -> bool:
    return int(service.figures.snapshot()[name]) > 0  # type: ignore[call-overload]


async def test_diagnose_finds_a_request_by_its_trace_id(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """`diagnose` shows the journalled request with a WISEflow X-Trace-Id, and its sync run."""
    sim = await make_simulator()
    database = tmp_path / "s.sqlite3"
    _, service = await make_service(service_env(sim, database), start=False)
    await service.runner.run()
    await service.journal.flush()
    journal = await sim.journal()
    assert journal
    async with service.store.db.execute(
        "SELECT trace_id, path FROM request_journal WHERE path = '/flows/search' LIMIT 1"
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    trace_id, path = row
    report = await collect(str(database), trace_id)
    assert [r["path"] for r in report["requests"]] == [path]
    assert report["sync_run"]["outcome"] == "ok"
    assert trace_id in render_text(report)
    missing = await collect(str(database), "no-such-trace")
    assert missing["requests"] == []
    assert "no request with X-Trace-Id no-such-trace" in render_text(missing)


async def test_requests_and_api_calls_are_traced(make_simulator: SimFactory, tmp_path: Path) -> None:
    """A webhook request gets a server span; API calls get client spans tagged with WISEflow's X-Trace-Id."""
    sim = await make_simulator()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(
        load_settings(service_env(sim, tmp_path / "s.sqlite3")), start=False, tracer_provider=provider
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        service = app[SERVICE]
        await service.runner.run()
        await service.journal.flush()
        async with service.store.db.execute("SELECT DISTINCT trace_id FROM request_journal") as cursor:
            journal_ids = {row[0] for row in await cursor.fetchall()}
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url("/webhooks/wiseflow"), data=b"{}") as response:
                assert response.status == 401
            async with session.get(server.make_url("/livez")) as response:
                assert response.status == 200
    finally:
        await server.close()
    spans = exporter.get_finished_spans()
    server_spans = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in server_spans] == ["POST /webhooks/wiseflow"]
    assert server_spans[0].attributes is not None
    assert server_spans[0].attributes["http.response.status_code"] == 401
    client_spans = [s for s in spans if s.kind is SpanKind.CLIENT]
    span_ids = {s.attributes.get("wiseflow.trace_id") for s in client_spans if s.attributes}
    assert len(client_spans) == service.client.calls
    assert span_ids == journal_ids


async def test_a_provider_given_to_build_app_gets_the_spans_of_every_component(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """One provider for every span: the sync run's, the webhook's receipt and processing (inbox worker),
    the API calls and the SIS deliveries (outbox deliverer) all reach the provider given to build_app."""
    sim = await make_simulator()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(load_settings(service_env(sim, tmp_path / "s.sqlite3")), tracer_provider=provider)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        service = app[SERVICE]
        await wait_until(lambda: _has_run(service), what="the first run over and delivered")
        async with sim.session.post(
            sim.api_url + "/webhooks",
            json={"url": str(server.make_url("/webhooks/wiseflow")), "events": ["FINAL_GRADE", "ASSESSMENT"]},
            headers=sim.auth_headers(),
        ) as response:
            assert response.status == 201
        await sim.advance({"grade_changes": 1})

        def names() -> set[str]:
            return {span.name for span in exporter.get_finished_spans()}

        await wait_until(lambda: "webhook.process" in names(), what="the worker's span at the given provider")
        await wait_until(lambda: _has_run(service), what="the webhook's grade delivered")
    finally:
        await server.close()
    expected = {"sync.run", "sync.refresh_flow", "POST /webhooks/wiseflow", "webhook.process", "SIS delivery"}
    assert expected <= names()
    assert any(name.startswith("WISEflow GET ") for name in names())  # the client's attempts, too


@pytest.mark.parametrize(
    "fault",
    [{"maintenance": {"seconds": 60, "retry_after": 30}}, {"storm_429": {"seconds": 60, "retry_after": 30}}],
)
async def test_a_restart_inside_a_retry_after_does_not_call_wiseflow_early(
    make_simulator: SimFactory, tmp_path: Path, fault: dict[str, Any]
) -> None:
    """The breaker's Retry-After outlives the process: a new one on the same database waits it out."""
    sim = await make_simulator()
    settings = load_settings(service_env(sim, tmp_path / "s.sqlite3", SYNC_RETRY_AFTER_MAX="0.5"))
    await sim.scenario(fault)
    first = await open_service(settings)
    try:
        summary = await first.runner.run()
    finally:
        await close_service(first)
    assert summary.outcome == "paused"
    sent = len(await sim.journal())
    second = await open_service(settings)
    try:
        assert await second.client.pauses.restore() > 20  # what the first process was told, less the time since
        again = await second.runner.run()
    finally:
        await close_service(second)
    assert again.outcome == "paused"
    assert len(await sim.journal()) == sent


async def test_a_second_run_on_one_database_refuses_to_start(simulator: SimHandle, tmp_path: Path) -> None:
    """One `run` per database: a second one stops at startup naming who holds the database; once the first
    has stopped, a new one starts."""
    env = service_env(simulator, tmp_path / "one.sqlite3")
    first = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
    await first.start_server()
    try:
        second = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
        with pytest.raises(StoreError, match=rf"in use by another `run`: pid {os.getpid()} on "):
            await second.start_server()
    finally:
        await first.close()
    third = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
    await third.start_server()
    await third.close()


async def test_a_sis_refusing_our_token_shows_as_paused_until_it_accepts_it(
    make_simulator: SimFactory, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The SIS wants another bearer token: /metrics and /status say delivery is paused, nothing is
    dead-lettered; the SIS takes our token again: every grade is delivered and the pause is over."""
    sim = await make_simulator(flows=6, participants=4)
    await sim.sis_scenario({"token": "the-sis-token"})
    env = service_env(sim, tmp_path / "s.sqlite3", SYNC_SINK_TOKEN="our-token")
    server, service = await make_service(env)
    async with aiohttp.ClientSession() as session:

        async def paused() -> bool:
            return (await get_json(session, str(server.make_url("/status"))))[1]["sink_paused"] is True

        await wait_until(paused, what="delivery paused")
        async with session.get(server.make_url("/metrics")) as response:
            assert "wiseflow_sink_paused 1.0" in await response.text()
        await sim.sis_scenario({"token": "our-token"})

        async def delivered() -> bool:
            status = (await get_json(session, str(server.make_url("/status"))))[1]
            return (
                status["outbox"] == {"delivered": len((await sim.sis_grades())["deliveries"])}
                and not status["sink_paused"]
            )

        await wait_until(delivered, what="every grade delivered once the SIS takes our token")
    assert service.status.snapshot().sink_paused is False
