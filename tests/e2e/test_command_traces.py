"""Every command that calls WISEflow exports its spans: run as a process, pointed at an OTLP receiver."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.conftest import SimHandle
from tests.e2e.test_traces import run_command
from tests.otlp import ReceivedSpan, Receiver, receiver

__all__ = ["receiver"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.slow


def api_spans(rec: Receiver) -> list[ReceivedSpan]:
    """The spans of requests to WISEflow (one per attempt), as the receiver got them."""
    return [s for s in rec.all_spans() if s.name.startswith("WISEflow ") and s.kind == "CLIENT"]


def one_trace(rec: Receiver, root: str) -> None:
    """Every span received belongs to one trace under a single root span named `root`."""
    spans = rec.all_spans()
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.name for r in roots] == [root]
    assert {s.trace_id for s in spans} == {roots[0].trace_id}


def credentials(sim: SimHandle, receiver: Receiver) -> dict[str, str]:
    """The environment of a command pointed at the simulator (OAuth) and at the OTLP receiver."""
    return {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
    }


async def test_webhooks_ensure_exports_a_span_per_request_with_the_journals_trace_ids(
    simulator: SimHandle, receiver: Receiver
) -> None:
    """`webhooks ensure`: token, GET and POST /webhooks each arrive as a span tagged with its X-Trace-Id."""
    env = credentials(simulator, receiver)
    args = ["webhooks", "ensure", "--url", "http://127.0.0.1:9/webhooks/wiseflow"]
    code, _, err = await run_command(args, env)
    assert code == 0, err
    journal = await simulator.journal()
    assert {(r["method"], r["path"]) for r in journal} >= {("GET", "/v1/webhooks"), ("POST", "/v1/webhooks")}
    spans = api_spans(receiver)
    assert sorted(s.attributes["wiseflow.trace_id"] for s in spans) == sorted(r["traceId"] for r in journal)
    one_trace(receiver, "webhooks.ensure")


async def test_certify_exports_the_span_of_its_subscription_request(
    simulator: SimHandle, receiver: Receiver, tmp_path: Path
) -> None:
    """`certify` asks WISEflow's GET /webhooks for the events: that request's span arrives, tagged."""
    env = {**credentials(simulator, receiver), "SYNC_DATABASE": str(tmp_path / "absent.sqlite3")}
    code, _, err = await run_command(["certify", "--format", "json"], env)
    assert code == 0, err
    journal = await simulator.journal()
    assert ("GET", "/v1/webhooks") in {(r["method"], r["path"]) for r in journal}
    spans = api_spans(receiver)
    assert sorted(s.attributes["wiseflow.trace_id"] for s in spans) == sorted(r["traceId"] for r in journal)
    one_trace(receiver, "certify")


async def test_preflight_exports_a_span_per_request_with_the_journals_trace_ids(
    simulator: SimHandle, receiver: Receiver, tmp_path: Path
) -> None:
    """`preflight` (without --public-url): every request it sends to WISEflow arrives as a tagged span."""
    env = {**credentials(simulator, receiver), "SYNC_DATABASE": str(tmp_path / "never.sqlite3")}
    code, out, err = await run_command(["preflight", "--format", "json"], env)
    assert code in (0, 1), err  # 1: a check failed; the spans are what this test is about
    assert orjson.loads(out)["checks"]
    journal = await simulator.journal()
    assert len(journal) > 1
    spans = api_spans(receiver)
    assert sorted(s.attributes["wiseflow.trace_id"] for s in spans) == sorted(r["traceId"] for r in journal)
    one_trace(receiver, "preflight")


# The demo's summary line of what its (in-process) simulator journalled: "... 412 (200: 400, 429: 12)".
_SEEN = re.compile(r"API requests seen by WISEflow\s+(\d+) \(([^)]*)\)")


async def test_demo_exports_a_span_for_every_request_its_simulator_journalled(receiver: Receiver) -> None:
    """`demo`: every request its simulator journalled (the summary's counts, by status) has its API span.

    The demo's simulator runs inside the process, so its summary is the reference. Its loops may still send
    a request between the summary and the shutdown: spans may outnumber the summary, never the reverse.
    """
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    code, out, err = await run_command(["demo", "--duration", "10"], env, within=600.0)
    assert code == 0, out + err
    seen = _SEEN.search(out)
    assert seen is not None, out
    journalled = Counter({int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", seen.group(2))})
    assert journalled[200] > 0
    assert journalled.total() == int(seen.group(1))
    answered = [s for s in api_spans(receiver) if "wiseflow.trace_id" in s.attributes]
    assert len({s.attributes["wiseflow.trace_id"] for s in answered}) == len(answered)
    exported = Counter(int(s.attributes["http.response.status_code"]) for s in answered)
    assert journalled - exported == Counter()
    assert "sync.run" in {s.name for s in receiver.all_spans()}
