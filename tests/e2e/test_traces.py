"""Traces as Jaeger would get them: commands run as processes export to an in-process OTLP receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from tests.conftest import SimHandle
from tests.otlp import ReceivedSpan, Receiver, receiver
from tests.waiting import PROCESS_DEADLINE, wait_until

__all__ = ["receiver"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.slow


@dataclass
class Sis:
    """A SIS on loopback that accepts every grade and keeps each request's `traceparent`."""

    url: str = ""
    traceparents: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.traceparents.append(request.headers.get("traceparent"))
        return web.json_response({"ok": True}, status=201)


@pytest.fixture
async def sis() -> AsyncIterator[Sis]:
    """The recording SIS, port chosen by the OS."""
    recorder = Sis()
    app = web.Application()
    app.router.add_post("/grades", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.url = f"http://127.0.0.1:{runner.addresses[0][1]}/grades"
    yield recorder
    await runner.cleanup()


async def run_command(args: list[str], env: dict[str, str], within: float = 120.0) -> tuple[int, str, str]:
    """Run `wiseflow-sync ARGS` as a process (the event loop stays free for the servers it calls).

    Returns the exit code, stdout and stderr.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    """The names of a span's ancestors, nearest first."""
    names = []
    parent = by_id.get(span.parent_span_id)
    while parent is not None:
        names.append(parent.name)
        parent = by_id.get(parent.parent_span_id)
    return names


async def test_sync_once_is_one_trace_and_the_sis_gets_the_delivery_spans_traceparent(
    simulator: SimHandle, receiver: Receiver, sis: Sis, tmp_path: Path
) -> None:
    """One run trace holds every API attempt (tagged with the journal's X-Trace-Ids); SIS gets traceparent."""
    env = {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_CLIENT_ID": simulator.config.client_id,
        "WISEFLOW_CLIENT_SECRET": simulator.config.client_secret,
        "SYNC_DATABASE": str(tmp_path / "s.sqlite3"),
        "SYNC_SINK_URL": sis.url,
        "SYNC_RATE_PER_SECOND": "200",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
    }
    code, _, err = await run_command(["sync", "--once"], env)
    assert code == 0, err
    spans = receiver.all_spans()
    by_id = {s.span_id: s for s in spans}
    runs = [s for s in spans if s.name == "sync.run"]
    assert [r.kind for r in runs] == ["INTERNAL"]
    api = [s for s in spans if s.name.startswith("WISEflow ")]
    assert api
    assert {s.trace_id for s in api} == {runs[0].trace_id}
    assert all(ancestors(s, by_id)[-1] == "sync.run" and s.kind == "CLIENT" for s in api)
    assert all("http.request.resend_count" in s.attributes for s in api)
    journal = await simulator.journal()
    assert sorted(s.attributes["wiseflow.trace_id"] for s in api) == sorted(r["traceId"] for r in journal)
    refreshes = [s for s in spans if s.name == "sync.refresh_flow"]
    assert refreshes
    assert all(by_id[s.parent_span_id].name == "sync.run" for s in refreshes)
    deliveries = {(s.trace_id, s.span_id) for s in spans if s.name == "SIS delivery" and s.kind == "CLIENT"}
    assert sis.traceparents
    sent = {(tp.split("-")[1], tp.split("-")[2]) for tp in sis.traceparents if tp is not None}
    assert len(sent) == len(sis.traceparents)
    assert sent <= deliveries


def signed_event(secret: str, flow_id: int) -> tuple[bytes, dict[str, str]]:
    """A FINAL_GRADE webhook for `flow_id`, signed the default way (base64 HMAC-SHA256 of the body)."""
    body = orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "sequence": int(time.time() * 1000),
            "event": "FINAL_GRADE",
            "timestamp": int(time.time()),
            "data": {"flowId": flow_id, "participantId": 1},
        }
    )
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return body, {"Content-Type": "application/json", "X-Wiseflow-Signature": signature}


def run_env(simulator: SimHandle, receiver: Receiver, database: Path, port: int) -> dict[str, str]:
    """The environment of a `run` on `port` against the simulator, exporting to the receiver."""
    return {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_CLIENT_ID": simulator.config.client_id,
        "WISEFLOW_CLIENT_SECRET": simulator.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": simulator.config.webhook_secret,
        "SYNC_DATABASE": str(database),
        "SYNC_HTTP_HOST": "127.0.0.1",
        "SYNC_HTTP_PORT": str(port),
        "SYNC_POLL_INTERVAL": "3600",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        # The default sampler keeps 1 in 100 accepted receipts: these tests follow one, so they keep all.
        "OTEL_TRACES_SAMPLER_ARG": "1",
    }


async def start_run(env: dict[str, str], simulator: SimHandle) -> asyncio.subprocess.Process:
    """`wiseflow-sync run` as a process, once it answers `/readyz`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "run", env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    root = f"http://127.0.0.1:{env['SYNC_HTTP_PORT']}"
    await wait_until(
        lambda: answers(simulator, root + "/readyz"), what="the service ready", within=PROCESS_DEADLINE
    )
    return proc


async def post_event(simulator: SimHandle, root: str, flow_id: int) -> None:
    """POST a signed FINAL_GRADE webhook for `flow_id` to the service at `root`; it must answer 200."""
    body, headers = signed_event(simulator.config.webhook_secret, flow_id)
    async with simulator.session.post(root + "/webhooks/wiseflow", data=body, headers=headers) as response:
        assert response.status == 200


async def wait_processed(simulator: SimHandle, root: str) -> None:
    """Wait until the service at `root` says it processed a webhook event."""
    await wait_until(
        lambda: processed(simulator, root + "/status"), what="the webhook processed", within=PROCESS_DEADLINE
    )


async def stop_run(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, and wait for the process (and its span flush) to end."""
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 60)


async def test_a_webhooks_processing_span_links_to_its_receipt(
    simulator: SimHandle, receiver: Receiver, tmp_path: Path
) -> None:
    """`run`: the webhook's request is a SERVER span; its processing, a CONSUMER span linked to it."""
    env = run_env(simulator, receiver, tmp_path / "r.sqlite3", free_port())
    root = f"http://127.0.0.1:{env['SYNC_HTTP_PORT']}"
    flow_id = (await simulator.truth())["flows"][0]["flow"]["id"]
    proc = await start_run(env, simulator)
    try:
        await post_event(simulator, root, flow_id)
        await wait_processed(simulator, root)
    finally:
        await stop_run(proc)
    spans = receiver.all_spans()
    receipts = [s for s in spans if s.kind == "SERVER" and s.name == "POST /webhooks/wiseflow"]
    processing = [s for s in spans if s.kind == "CONSUMER" and s.name == "webhook.process"]
    assert len(receipts) == 1
    assert [p.links for p in processing] == [[(receipts[0].trace_id, receipts[0].span_id)]]
    assert any(s.parent_span_id == processing[0].span_id and s.kind == "CLIENT" for s in spans)


async def test_the_link_to_the_receipt_survives_a_restart_before_processing(
    simulator: SimHandle, receiver: Receiver, tmp_path: Path
) -> None:
    """An event received by one process and processed by the next still links to its receipt."""
    env = run_env(simulator, receiver, tmp_path / "r.sqlite3", free_port())
    root = f"http://127.0.0.1:{env['SYNC_HTTP_PORT']}"
    flow_id = (await simulator.truth())["flows"][0]["flow"]["id"]
    await simulator.scenario({"maintenance": {"open": True, "retry_after": 1}})  # nothing can be processed
    proc = await start_run(env, simulator)
    try:
        await post_event(simulator, root, flow_id)  # stored durably before its 200
    finally:
        await stop_run(proc)
    await simulator.scenario({"maintenance": {"open": False}})
    proc = await start_run(env, simulator)
    try:
        await wait_processed(simulator, root)
    finally:
        await stop_run(proc)
    spans = receiver.all_spans()
    receipts = [s for s in spans if s.kind == "SERVER" and s.name == "POST /webhooks/wiseflow"]
    assert len(receipts) == 1
    succeeded = {
        s.parent_span_id
        for s in spans
        if s.kind == "CLIENT" and s.attributes.get("http.response.status_code") == 200
    }
    done = [s for s in spans if s.name == "webhook.process" and s.span_id in succeeded]
    assert done, "the second process refreshed the flow"
    assert all(p.links == [(receipts[0].trace_id, receipts[0].span_id)] for p in done)


async def answers(sim: SimHandle, url: str) -> bool:
    """True once `url` answers 200."""
    try:
        async with sim.session.get(url) as response:
            return response.status == 200
    except OSError:
        return False


async def processed(sim: SimHandle, url: str) -> bool:
    """True once `/status` counts a processed webhook event."""
    async with sim.session.get(url) as response:
        return int((await response.json())["webhooks"]["processed"]) >= 1
